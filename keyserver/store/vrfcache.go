package store

import (
	"context"
	"fmt"
)

// VRF outputs (docs/spec/directory.md §Storage, VRF outputs): the
// directory keeps the VRF output and proof of every label it computed, so
// that a restart does not evaluate the VRF again for every label of its
// first epochs. They are a cache: deterministic given the VRF key and the
// input, written without a sync, and never read as the source of truth
// for anything but themselves.

// MaxVRFOutputSize bounds one stored VRF output (the directory stores the
// 32-byte label and the 80-byte proof).
const MaxVRFOutputSize = 256

// MaxVRFOutputs bounds the outputs of one PutVRFOutputs or GetVRFOutputs.
const MaxVRFOutputs = 1 << 20

// A VRFOutput is the stored output of one VRF input, under the key that
// computed it. Input is the SHA-256 of the VRF input (the store never
// holds the input itself); Output is opaque to the store.
type VRFOutput struct {
	Input  [32]byte
	Output []byte
}

// VRFCacheStore keeps VRF outputs by VRF key id (the SHA-256 of the VRF
// public key) and input hash. Part of DirectoryStore.
type VRFCacheStore interface {
	// PutVRFOutputs stores outs under key, replacing any output stored
	// for the same input. It need not be durable: after a crash some or
	// all may be missing, never partly written. It does not need a head.
	// It returns ErrInvalidCommit for more than MaxVRFOutputs outputs or
	// an output that is empty or over MaxVRFOutputSize.
	PutVRFOutputs(ctx context.Context, key [32]byte, outs []VRFOutput) error

	// GetVRFOutputs calls fn(i, output) for each inputs[i] that has an
	// output stored under key, in order; fn must not retain output.
	// ErrInvalidCommit for more than MaxVRFOutputs inputs.
	GetVRFOutputs(ctx context.Context, key [32]byte, inputs [][32]byte, fn func(i int, output []byte)) error

	// DropVRFOutputs deletes every output stored under a key other than
	// keep (those of a retired VRF key).
	DropVRFOutputs(ctx context.Context, keep [32]byte) error
}

// CheckVRFInputs checks the number of inputs of a GetVRFOutputs call.
func CheckVRFInputs(n int) error {
	if n > MaxVRFOutputs {
		return fmt.Errorf("%w: %d VRF inputs", ErrInvalidCommit, n)
	}
	return nil
}

// CheckVRFOutputs checks a PutVRFOutputs call, as every backend does
// first.
func CheckVRFOutputs(outs []VRFOutput) error {
	if err := CheckVRFInputs(len(outs)); err != nil {
		return err
	}
	for _, o := range outs {
		if len(o.Output) == 0 || len(o.Output) > MaxVRFOutputSize {
			return fmt.Errorf("%w: VRF output of %d bytes", ErrInvalidCommit, len(o.Output))
		}
	}
	return nil
}

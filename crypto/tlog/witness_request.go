package tlog

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// The add-checkpoint request body of C2SP tlog-witness: an old size line,
// zero to 63 consistency proof lines, an empty line, then the checkpoint.
//
//	old 20852014
//	PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=
//	...
//
//	example.com/behind-the-sofa
//	...

// MaxWitnessProofLines is the most consistency proof lines a request may
// carry (tlog-witness §add-checkpoint).
const MaxWitnessProofLines = 63

// maxRequestSize bounds an add-checkpoint body: the size line, the proof
// lines and a note.
const maxRequestSize = len("old ") + 20 + MaxWitnessProofLines*45 + 1 + MaxNoteSize

// AddCheckpointRequest is an add-checkpoint request.
type AddCheckpointRequest struct {
	OldSize    uint64
	Proof      []Hash // consistency proof from OldSize to the checkpoint's size
	Checkpoint []byte // the signed note, verbatim
}

// ParseAddCheckpointRequest parses an add-checkpoint request body. It is
// strict: the old size has no leading zeroes and is at most 2^63-1; each
// proof line is canonical padded base64 of 32 bytes; there are at most 63;
// the checkpoint is a structurally valid signed note of at most
// MaxNoteSize bytes. Signatures are not verified. A parsed request
// marshals back to exactly body.
func ParseAddCheckpointRequest(body []byte) (*AddCheckpointRequest, error) {
	r, err := parseAddCheckpointRequest(body)
	if err != nil {
		return nil, fmt.Errorf("%w: add-checkpoint request: %v", ErrMalformed, err)
	}
	return r, nil
}

func parseAddCheckpointRequest(body []byte) (*AddCheckpointRequest, error) {
	if len(body) > maxRequestSize {
		return nil, errors.New("too large")
	}
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	if !ok {
		return nil, errors.New("no old size line")
	}
	num, ok := bytes.CutPrefix(line, []byte("old "))
	if !ok {
		return nil, errors.New("no old size line")
	}
	r := &AddCheckpointRequest{}
	var err error
	if r.OldSize, err = parseDecimal(num); err != nil {
		return nil, fmt.Errorf("old size: %v", err)
	}
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return nil, errors.New("no empty line before the checkpoint")
		}
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == MaxWitnessProofLines {
			return nil, errors.New("more than 63 proof lines")
		}
		h, err := decodeHash(line)
		if err != nil {
			return nil, fmt.Errorf("proof line: %v", err)
		}
		r.Proof = append(r.Proof, h)
	}
	if _, _, err := splitNote(rest); err != nil {
		return nil, err
	}
	r.Checkpoint = rest
	return r, nil
}

// Marshal returns the request body.
func (r *AddCheckpointRequest) Marshal() ([]byte, error) {
	if r.OldSize > MaxTreeSize || len(r.Proof) > MaxWitnessProofLines {
		return nil, fmt.Errorf("%w: add-checkpoint request", ErrMalformed)
	}
	if _, _, err := splitNote(r.Checkpoint); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 24+45*len(r.Proof)+1+len(r.Checkpoint))
	b = append(b, "old "...)
	b = strconv.AppendUint(b, r.OldSize, 10)
	b = append(b, '\n')
	for _, h := range r.Proof {
		b = append(b, h.String()...)
		b = append(b, '\n')
	}
	b = append(b, '\n')
	return append(b, r.Checkpoint...), nil
}

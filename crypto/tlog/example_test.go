package tlog_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
)

// Example shows one epoch end to end: the log appends a batch and signs a
// checkpoint, a witness cosigns it, and a client accepts it and checks an
// inclusion proof against it.
func Example() {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const origin = "moat.example/directory/acme"

	// The log.
	logKey, _ := keys.GenerateLogKey(rand.Reader)
	tree, _ := tlog.NewTree(ctx, tlog.NewMemoryNodeStore(), 0)
	tree.Append(ctx, []byte("epoch 0"), []byte("epoch 1"), []byte("epoch 2"))
	root, _ := tree.Root(ctx, tree.Size())
	signed, _ := tlog.SignCheckpoint(&tlog.Checkpoint{Origin: origin, Size: tree.Size(), Root: root}, logKey)

	// A witness.
	wKey, _ := tlog.GenerateWitnessKey(rand.Reader, "witness.example/w1", tlog.CosignatureEd25519)
	witness, _ := tlog.NewWitness(tlog.WitnessConfig{
		Keys:  []*tlog.WitnessPrivateKey{wKey},
		Logs:  map[string]*keys.LogPublicKey{origin: logKey.Public()},
		Store: tlog.NewMemoryWitnessStore(),
	})
	body, _ := (&tlog.AddCheckpointRequest{OldSize: 0, Checkpoint: signed}).Marshal()
	req, _ := tlog.ParseAddCheckpointRequest(body) // what the witness's HTTP handler does
	cosigs, err := witness.AddCheckpoint(ctx, req, now)
	fmt.Println("witness status:", tlog.StatusCode(err))
	signed, _ = tlog.AddCosignatures(signed, cosigs)

	// A client.
	v, _ := tlog.NewVerifier(tlog.VerifierConfig{
		Origin: origin, LogKey: logKey.Public(),
		Witnesses: []*tlog.WitnessPublicKey{wKey.Public()}, Quorum: 1,
		MaxAge: time.Hour,
		// The time floor: here the enrolment's time (docs/spec/tlog.md
		// §Time floor).
		NotBefore: now,
	})
	cp, err := v.VerifyCheckpoint(signed, nil, now.Add(time.Minute))
	fmt.Println("client accepts size", cp.Size, err)
	proof, _ := tree.InclusionProof(ctx, 1, cp.Size)
	fmt.Println("inclusion:", tlog.VerifyInclusion(tlog.LeafHash([]byte("epoch 1")), 1, cp.Size, proof, cp.Root))

	// Output:
	// witness status: 200
	// client accepts size 3 <nil>
	// inclusion: <nil>
}

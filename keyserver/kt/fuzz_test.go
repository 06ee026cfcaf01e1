package kt_test

// Decoder fuzz targets and round-trip tests (STYLE items 3 and 11): every
// decoder never panics, fails only with kt.ErrMalformed (or, for the client
// state, a crypto/tlog error about its checkpoint), and what it accepts
// re-encodes to the same bytes (parse(x) ok ⇒ marshal(parse(x)) == x).
//
// Responses are tens of kilobytes (a checkpoint note, a user value), and
// the fuzzer's minimisation of such inputs stalls it; run the targets with
//
//	go test -run '^$' -fuzz '^FuzzParseLookupResponse$' -fuzzminimizetime 0 ./keyserver/kt/

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

type codec struct {
	name      string
	roundTrip func(data []byte) ([]byte, error)
}

func rt[T any](parse func([]byte) (T, error), marshal func(T) ([]byte, error)) func([]byte) ([]byte, error) {
	return func(d []byte) ([]byte, error) {
		v, err := parse(d)
		if err != nil {
			return nil, err
		}
		return marshal(v)
	}
}

var (
	corpusOnce  sync.Once
	corpusData  map[string][][]byte
	corpusWorld *world
	// rotatedBundle is the bundle of the ClientStateRotated corpus: after
	// a CA rotation and a log key rotation.
	rotatedBundle *org.TrustBundle
	// transitionsState is the state of a client of transitionsWorld
	// saved before both rotations.
	transitionsState []byte
	transitionsWorld *world
)

func codecs() []codec {
	return []codec{
		{"LookupResponse", rt(kt.ParseLookupResponse, (*kt.LookupResponse).Marshal)},
		{"HistoryResponse", rt(kt.ParseHistoryResponse, (*kt.HistoryResponse).Marshal)},
		{"MonitorResponse", rt(kt.ParseMonitorResponse, (*kt.MonitorResponse).Marshal)},
		{"ConsistencyResponse", rt(kt.ParseConsistencyResponse, (*kt.ConsistencyResponse).Marshal)},
		{"ValueRecord", rt(kt.ParseValueRecord, (*kt.ValueRecord).Marshal)},
		{"EpochEntry", rt(kt.ParseEpochEntry, (*kt.EpochEntry).Marshal)},
		{"TransitionsResponse", rt(kt.ParseTransitionsResponse, (*kt.TransitionsResponse).Marshal)},
		{"ClientState", func(d []byte) ([]byte, error) {
			c, err := kt.RestoreClient(corpusWorld.d.Config(maxAge), d)
			if err != nil {
				return nil, err
			}
			return c.MarshalState()
		}},
		{"ClientStateRotated", func(d []byte) ([]byte, error) {
			c, err := kt.RestoreClient(kt.Config{Bundle: rotatedBundle, MaxAge: maxAge}, d)
			if err != nil {
				return nil, err
			}
			return c.MarshalState()
		}},
	}
}

// corpus returns real encodings of every type.
func corpus(t testing.TB) map[string][][]byte {
	corpusOnce.Do(func() {
		w := newWorld(t, 60)
		c := map[string][][]byte{}
		add := func(name string) func([]byte, error) {
			return func(enc []byte, err error) {
				if err != nil {
					panic(err)
				}
				c[name] = append(c[name], enc)
			}
		}
		cl := w.client(t)
		add("ClientState")(cl.MarshalState())
		add("LookupResponse")(must(w.d.Lookup(w.alice, 0)).Marshal())
		add("LookupResponse")(must(w.d.Lookup(uid(9), 0)).Marshal())
		add("LookupResponse")(must(w.d.LookupOrg(org.OrgLabelAdminRoster, 0)).Marshal())
		aliceLabel := must(cl.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(2))).Label
		must(w.d.Enrol(w.alice, w.a1, at(2)))
		must(w.d.PublishEpoch(at(3)))
		must(w.d.PublishEpoch(at(4)))
		// Responses with a record proof.
		withProof := must(w.d.Lookup(w.alice, 1))
		withProof.RecordProof = must(w.d.EpochProof(aliceLabel, withProof.Record.Epoch))
		add("LookupResponse")(withProof.Marshal())
		histProof := must(w.d.History(w.alice, 0, 1))
		histProof.RecordProof = must(w.d.EpochProof(aliceLabel, 0))
		add("HistoryResponse")(histProof.Marshal())
		add("HistoryResponse")(must(w.d.History(w.alice, 0, 1)).Marshal())
		add("HistoryResponse")(must(w.d.History(w.alice, 2, 0)).Marshal())
		add("HistoryResponse")(must(w.d.History(uid(9), 0, 3)).Marshal())
		add("ConsistencyResponse")(must(w.d.Consistency(1)).Marshal())
		add("ConsistencyResponse")(must(w.d.Consistency(0)).Marshal())
		add("ConsistencyResponse")((&kt.ConsistencyResponse{Checkpoint: kt.CheckpointUpdate{BaseSize: 3}}).Marshal())
		for _, r := range must(w.d.Records(org.Label{User: w.bob})) {
			add("ValueRecord")(r.Marshal())
		}
		add("ValueRecord")((&kt.ValueRecord{Version: 1}).Marshal())
		add("EpochEntry")(must(w.d.Lookup(w.alice, 0)).Proof.Entry.Marshal())
		add("MonitorResponse")(must(w.d.Monitor(w.alice, w.a1.ID, 0, 0, 0)).Marshal())
		add("MonitorResponse")(must(w.d.Monitor(w.alice, w.a1.ID, 0, 0, cl.TreeSize())).Marshal())
		add("MonitorResponse")(must(w.d.Monitor(w.alice, w.a1.ID, 1, 2, 0)).Marshal())
		add("MonitorResponse")(must(w.d.Monitor(w.alice, w.a1.ID, 2, 3, 3)).Marshal())
		must(cl.Monitor(w.alice, kt.Expected{Self: w.a1.ID}, must(w.d.Monitor(w.alice, w.a1.ID, 0, 0, cl.TreeSize())), at(5)))
		add("ClientState")(cl.MarshalState())
		// An enrolled client before its first checkpoint: a floor, nothing else.
		add("ClientState")(must(kt.NewClient(kt.Config{Bundle: w.d.TrustBundle(), MaxAge: maxAge, NotBefore: at(1)})).MarshalState())
		// States with a CA history and a checkpoint under the previous
		// log key.
		rw := newWorld(t, 61)
		rc := rw.client(t)
		must(rc.VerifyLookup(rw.tenant, rw.bob, must(rw.d.Lookup(rw.bob, 0)), at(2)))
		offline := rw.client(t)
		must(offline.VerifyLookup(rw.tenant, rw.bob, must(rw.d.Lookup(rw.bob, 0)), at(2)))
		add("TransitionsResponse")(must(rw.d.Transitions(1, 0)).Marshal())
		must(rw.d.RotateCA(at(3)))
		must(rw.d.PublishEpoch(at(4)))
		rot := must(rc.VerifyOrgLookup(org.OrgLabelCARotation, must(rw.d.LookupOrg(org.OrgLabelCARotation, rc.TreeSize())), at(5)))
		must(rc.FollowTrustBundle(rot, must(rw.d.LookupOrg(org.OrgLabelTrustBundle, rc.TreeSize())), at(5)))
		must(rw.d.RotateLogKey(at(6)))
		must(rw.d.PublishEpoch(at(7)))
		rotatedBundle = must(rc.FollowTrustBundle(nil, must(rw.d.LookupOrg(org.OrgLabelTrustBundle, rc.TreeSize())), at(8)))
		add("ClientStateRotated")(rc.MarshalState())
		add("TransitionsResponse")(must(rw.d.Transitions(1, offline.TreeSize())).Marshal())
		add("TransitionsResponse")(must(rw.d.Transitions(1, 0)).Marshal())
		transitionsState = must(offline.MarshalState())
		transitionsWorld = rw
		corpusData, corpusWorld = c, w
	})
	return corpusData
}

func checkDecodeError(t *testing.T, name string, err error) {
	t.Helper()
	if !errors.Is(err, kt.ErrMalformed) && !(strings.HasPrefix(name, "ClientState") && (isTlogError(err) || errors.Is(err, kt.ErrStateBundle))) {
		t.Fatalf("%s: unexpected error %T: %v", name, err, err)
	}
}

func isTlogError(err error) bool {
	return errors.Is(err, tlog.ErrMalformed) || errors.Is(err, tlog.ErrBadSignature) || errors.Is(err, tlog.ErrUnknownOrigin)
}

func checkRoundTrip(t *testing.T, c codec, data []byte) {
	t.Helper()
	out, err := c.roundTrip(data)
	if err != nil {
		checkDecodeError(t, c.name, err)
		return
	}
	if !bytes.Equal(out, data) && !(c.name == "ClientState" && clientStateNormalised(t, data, out)) {
		t.Fatalf("%s: accepted input does not re-encode to itself", c.name)
	}
}

// clientStateNormalised reports whether a restored client state out that
// differs from its input data differs only as restoring may change it: a
// floor below the trust bundle's issue time raised to it, or a tlog trust
// state in the encoding without a floor rewritten in the current one
// (docs/spec/tlog.md §Trust state). out itself must then re-encode to
// itself.
func clientStateNormalised(t *testing.T, data, out []byte) bool {
	t.Helper()
	cfg := corpusWorld.d.Config(maxAge)
	c, err := kt.RestoreClient(cfg, out)
	if err != nil || !bytes.Equal(must(c.MarshalState()), out) {
		t.Fatalf("ClientState: a restored state does not restore to itself: %v", err)
	}
	legacy := bytes.Contains(data, []byte("moat/v1/tlog/trust-state"))
	return legacy || c.Floor().Equal(cfg.Bundle.IssuedAt)
}

func TestEncodingsRoundTrip(t *testing.T) {
	c := corpus(t)
	for _, cd := range codecs() {
		t.Run(cd.name, func(t *testing.T) {
			seeds := c[cd.name]
			if len(seeds) == 0 {
				t.Fatal("no corpus")
			}
			for _, s := range seeds {
				out, err := cd.roundTrip(s)
				if err != nil || !bytes.Equal(out, s) {
					t.Fatalf("round trip failed: %v", err)
				}
				step := 1 + len(s)/97
				for n := 0; n < len(s); n += step {
					if _, err := cd.roundTrip(s[:n]); err == nil {
						t.Fatalf("truncation to %d of %d bytes parsed", n, len(s))
					}
				}
				if _, err := cd.roundTrip(append(bytes.Clone(s), 0)); err == nil {
					t.Fatal("trailing byte parsed")
				}
				stride := 1 + len(s)/211
				if testing.Short() && strings.HasPrefix(cd.name, "ClientState") {
					stride = 1 + len(s)/23 // each restore verifies a note
				}
				for i := 0; i < len(s); i += stride {
					m := bytes.Clone(s)
					m[i] ^= 0x80
					checkRoundTrip(t, cd, m)
				}
			}
		})
	}
}

// TestDecodersRandomMutations sweeps random mutations of every corpus
// encoding through every decoder, checking the round-trip property.
func TestDecodersRandomMutations(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 150
	}
	c := corpus(t)
	r := rand.New(rand.NewPCG(0x6b74, 1))
	for _, cd := range codecs() {
		if strings.HasPrefix(cd.name, "ClientState") {
			continue // covered by TestEncodingsRoundTrip and its fuzz target
		}
		for _, s := range c[cd.name] {
			for range n {
				m := bytes.Clone(s)
				for range 1 + r.IntN(3) {
					p := r.IntN(len(m) + 1)
					switch r.IntN(3) {
					case 0:
						if p < len(m) {
							m[p] = byte(r.Uint32())
						}
					case 1:
						if p < len(m) {
							m = append(m[:p], m[p+1:]...)
						}
					case 2:
						m = append(m[:p], append([]byte{byte(r.Uint32())}, m[p:]...)...)
					}
				}
				checkRoundTrip(t, cd, m)
			}
		}
	}
}

func fuzzCodec(f *testing.F, name string) {
	var cd codec
	for _, c := range codecs() {
		if c.name == name {
			cd = c
		}
	}
	for _, s := range corpus(f)[name] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip(t, cd, data) })
}

func FuzzParseLookupResponse(f *testing.F)      { fuzzCodec(f, "LookupResponse") }
func FuzzParseHistoryResponse(f *testing.F)     { fuzzCodec(f, "HistoryResponse") }
func FuzzParseMonitorResponse(f *testing.F)     { fuzzCodec(f, "MonitorResponse") }
func FuzzParseConsistencyResponse(f *testing.F) { fuzzCodec(f, "ConsistencyResponse") }
func FuzzParseValueRecord(f *testing.F)         { fuzzCodec(f, "ValueRecord") }
func FuzzParseEpochEntry(f *testing.F)          { fuzzCodec(f, "EpochEntry") }
func FuzzParseTransitionsResponse(f *testing.F) { fuzzCodec(f, "TransitionsResponse") }
func FuzzRestoreClient(f *testing.F)            { fuzzCodec(f, "ClientState") }
func FuzzRestoreClientRotated(f *testing.F)     { fuzzCodec(f, "ClientStateRotated") }

// FuzzVerifyLookup feeds arbitrary lookup responses to a client that
// trusts the directory's checkpoint: it never panics, and whatever it
// rejects leaves its state byte-identical.
func FuzzVerifyLookup(f *testing.F) {
	c := corpus(f)
	for _, s := range c["LookupResponse"] {
		f.Add(s)
	}
	w := corpusWorld
	base := must(kt.RestoreClient(w.d.Config(maxAge), c["ClientState"][1]))
	st := must(base.MarshalState())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := kt.ParseLookupResponse(data)
		if err != nil {
			return
		}
		cl := must(kt.RestoreClient(w.d.Config(maxAge), st))
		if _, err := cl.VerifyLookup(w.tenant, w.alice, r, at(6)); err != nil && !errors.Is(err, kt.ErrNotFound) {
			if !bytes.Equal(must(cl.MarshalState()), st) && cl.Fork() == nil {
				t.Fatalf("rejected response (%v) changed the state", err)
			}
		}
	})
}

// FuzzMonitor feeds arbitrary monitoring responses to a new client of
// alice's device a1 (docs/spec/directory.md §Per-epoch monitoring): it
// never panics, and whatever it rejects leaves its state byte-identical.
func FuzzMonitor(f *testing.F) {
	c := corpus(f)
	for _, s := range c["MonitorResponse"] {
		f.Add(s)
	}
	w := corpusWorld
	st := c["ClientState"][0] // no checkpoint yet
	first := must(kt.RestoreClient(w.d.Config(maxAge), st))
	if _, err := first.Monitor(w.alice, kt.Expected{Self: w.a1.ID}, must(kt.ParseMonitorResponse(c["MonitorResponse"][0])), at(6)); err != nil {
		f.Fatalf("the first seed is refused: %v", err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := kt.ParseMonitorResponse(data)
		if err != nil {
			return
		}
		cl := must(kt.RestoreClient(w.d.Config(maxAge), st))
		if _, err := cl.Monitor(w.alice, kt.Expected{Self: w.a1.ID}, r, at(6)); err != nil {
			if !bytes.Equal(must(cl.MarshalState()), st) && cl.Fork() == nil {
				t.Fatalf("rejected response (%v) changed the state", err)
			}
		}
	})
}

// FuzzFollowTransitions feeds arbitrary transitions responses to a client
// saved before a CA and a log key rotation: it never panics, and whatever
// it rejects leaves its state byte-identical.
func FuzzFollowTransitions(f *testing.F) {
	c := corpus(f)
	for _, s := range c["TransitionsResponse"] {
		f.Add(s)
	}
	w := transitionsWorld
	cfg := kt.Config{Bundle: w.firstBundle, MaxAge: maxAge}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := kt.ParseTransitionsResponse(data)
		if err != nil {
			return
		}
		cl := must(kt.RestoreClient(cfg, transitionsState))
		if _, err := cl.FollowTransitions(r, at(9)); err != nil {
			if !bytes.Equal(must(cl.MarshalState()), transitionsState) {
				t.Fatalf("rejected response (%v) changed the state", err)
			}
		}
	})
}

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
)

func codecs() []codec {
	return []codec{
		{"LookupResponse", rt(kt.ParseLookupResponse, (*kt.LookupResponse).Marshal)},
		{"HistoryResponse", rt(kt.ParseHistoryResponse, (*kt.HistoryResponse).Marshal)},
		{"ConsistencyResponse", rt(kt.ParseConsistencyResponse, (*kt.ConsistencyResponse).Marshal)},
		{"ValueRecord", rt(kt.ParseValueRecord, (*kt.ValueRecord).Marshal)},
		{"EpochEntry", rt(kt.ParseEpochEntry, (*kt.EpochEntry).Marshal)},
		{"ClientState", func(d []byte) ([]byte, error) {
			c, err := kt.RestoreClient(corpusWorld.d.Config(maxAge), d)
			if err != nil {
				return nil, err
			}
			out, err := c.MarshalState()
			// A format-1 state (no verified signatures) is written back
			// as format 2 with an empty cache: undo that upgrade.
			if err == nil && d[1] == 1 {
				up := append(append([]byte{d[0], 2}, d[2:]...), 0, 0, 0)
				if !bytes.Equal(out, up) {
					return nil, errors.New("format 1 state not upgraded to format 2 as is")
				}
				out = d
			}
			return out, err
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
		must(cl.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)))
		must(w.d.Enrol(w.alice, w.a1, at(2)))
		must(w.d.PublishEpoch(at(3)))
		must(w.d.PublishEpoch(at(4)))
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
		must(cl.Monitor(w.alice, kt.Expected{Self: w.a1.ID}, must(w.d.History(w.alice, 0, cl.TreeSize())), at(5)))
		add("ClientState")(cl.MarshalState())
		corpusData, corpusWorld = c, w
	})
	return corpusData
}

func checkDecodeError(t *testing.T, name string, err error) {
	t.Helper()
	if !errors.Is(err, kt.ErrMalformed) && !(name == "ClientState" && isTlogError(err)) {
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
	if !bytes.Equal(out, data) {
		t.Fatalf("%s: accepted input does not re-encode to itself", c.name)
	}
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
				if testing.Short() && cd.name == "ClientState" {
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
		if cd.name == "ClientState" {
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
func FuzzParseConsistencyResponse(f *testing.F) { fuzzCodec(f, "ConsistencyResponse") }
func FuzzParseValueRecord(f *testing.F)         { fuzzCodec(f, "ValueRecord") }
func FuzzParseEpochEntry(f *testing.F)          { fuzzCodec(f, "EpochEntry") }
func FuzzRestoreClient(f *testing.F)            { fuzzCodec(f, "ClientState") }

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

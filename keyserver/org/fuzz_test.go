package org

// Decoder fuzz targets and round-trip tests (STYLE items 3 and 11): every
// decoder of this package never panics, returns only ErrMalformed or a
// *KeyError, and what it accepts re-encodes to the same bytes
// (parse(x) ok ⇒ marshal(parse(x)) == x).

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

type codec struct {
	name      string
	roundTrip func(data []byte) ([]byte, error) // parse then marshal
}

var codecs = []codec{
	{"DeviceCertificate", rt(ParseDeviceCertificate, (*DeviceCertificate).Marshal)},
	{"TrustBundle", rt(ParseTrustBundle, (*TrustBundle).Marshal)},
	{"EnrolmentCode", rt(ParseEnrolmentCode, func(c *EnrolmentCode) ([]byte, error) { return c.Marshal(), nil })},
	{"EnrolmentCodeText", func(d []byte) ([]byte, error) {
		c, err := ParseEnrolmentCodeText(string(d))
		if err != nil {
			return nil, err
		}
		return []byte(c.Text()), nil
	}},
	{"EnrolmentRequest", rt(ParseEnrolmentRequest, (*EnrolmentRequest).Marshal)},
	{"Approval", rt(ParseApproval, (*Approval).Marshal)},
	{"CARotation", rt(ParseCARotation, (*CARotation).Marshal)},
	{"AdminRoster", rt(ParseAdminRoster, (*AdminRoster).Marshal)},
	{"OrgChart", rt(ParseOrgChart, (*OrgChart).Marshal)},
	{"PolicyBundle", rt(ParsePolicyBundle, (*PolicyBundle).Marshal)},
	{"EscrowPolicy", rt(ParseEscrowPolicy, (*EscrowPolicy).Marshal)},
	{"Revocation", rt(ParseRevocation, (*Revocation).Marshal)},
	{"WipeInstruction", rt(ParseWipeInstruction, (*WipeInstruction).Marshal)},
	{"Entry", rt(ParseEntry, (*Entry).Marshal)},
	{"UserValue", rt(ParseUserValue, (*UserValue).Marshal)},
	{"TenantState", func(d []byte) ([]byte, error) {
		// parseTenant is UnmarshalTenant without the signer check, which
		// needs the corpus's signer.
		t, err := parseTenant(d)
		if err != nil {
			return nil, parseErr("tenant state", err)
		}
		return t.MarshalBinary()
	}},
	{"TenantRecords", func(d []byte) ([]byte, error) {
		// The loader without the signer check; records are framed as
		// key || uint32 length || value.
		l := NewTenantLoader(nil)
		for len(d) > 0 {
			if len(d) < StateKeySize+4 {
				return nil, ErrMalformed
			}
			k := StateKey(d[:StateKeySize])
			n := int(d[StateKeySize])<<24 | int(d[StateKeySize+1])<<16 | int(d[StateKeySize+2])<<8 | int(d[StateKeySize+3])
			d = d[StateKeySize+4:]
			if n > len(d) {
				return nil, ErrMalformed
			}
			if err := l.Add(k, d[:n]); err != nil {
				return nil, err
			}
			d = d[n:]
		}
		t, err := l.check()
		if err != nil {
			return nil, err
		}
		recs, err := t.StateRecords()
		if err != nil {
			return nil, err
		}
		return frameRecords(recs), nil
	}},
}

func frameRecords(recs []StateRecord) []byte {
	var out []byte
	for _, r := range recs {
		out = append(out, r.Key[:]...)
		out = append(out, byte(len(r.Value)>>24), byte(len(r.Value)>>16), byte(len(r.Value)>>8), byte(len(r.Value)))
		out = append(out, r.Value...)
	}
	return out
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
	corpusOnce sync.Once
	corpusData map[string][][]byte
	corpusFix  *fixture
)

// corpus returns real encodings of every type, from a tenant in a rich
// state after a CA rotation.
func corpus(t testing.TB) map[string][][]byte {
	corpusOnce.Do(func() {
		ft := t
		if ft == nil {
			ft = &testing.T{}
		}
		f := richFixture(ft)
		c := map[string][][]byte{}
		add := func(name string) func([]byte, error) {
			return func(enc []byte, err error) {
				if err != nil {
					panic(err)
				}
				c[name] = append(c[name], enc)
			}
		}
		collect := func(up Update) {
			switch {
			case up.Label.User != (UserID{}):
				add("UserValue")(up.Value, nil)
				for _, e := range must(ParseUserValue(up.Value)).Entries {
					add("Entry")(e.Marshal())
				}
				for _, cert := range must(ParseUserValue(up.Value)).Certificates {
					add("DeviceCertificate")(cert.Marshal())
				}
			case up.Label.Org == OrgLabelTrustBundle:
				add("TrustBundle")(up.Value, nil)
			case up.Label.Org == OrgLabelAdminRoster:
				add("AdminRoster")(up.Value, nil)
			case up.Label.Org == OrgLabelOrgChart:
				add("OrgChart")(up.Value, nil)
			case up.Label.Org == OrgLabelEscrowPolicy:
				add("EscrowPolicy")(up.Value, nil)
			case up.Label.Org == OrgLabelCARotation:
				add("CARotation")(up.Value, nil)
			}
		}
		publish := func() {
			for _, up := range must(f.t.Publish(t0)) {
				collect(up)
			}
		}
		publish()
		add("EscrowPolicy")(f.t.escrow.Marshal())
		// One with previous signatures and two escrow keys.
		ep, eks := testEscrowPolicyKeys(ft, f)
		ep.Keys = append(ep.Keys, EscrowKey{NotBefore: ep.Keys[0].NotAfter, NotAfter: ep.Keys[0].NotAfter.Add(ep.Period),
			PublicKey: testXWingKey(ft, f), ShareHashes: [][32]byte{{7}, {8}, {9}}})
		ep.AuditorSignatures = nil
		signAuditors(ft, ep, ep.Auditors, &ep.AuditorSignatures, eks[0], eks[1])
		signAuditors(ft, ep, ep.Auditors, &ep.PreviousSignatures, eks[2])
		ep.Header = Header{Tenant: ep.Tenant, Sequence: 2, IssuedAt: t0}
		ep.Signature = make([]byte, SignatureSize)
		add("EscrowPolicy")(ep.Marshal())
		add("PolicyBundle")(f.t.policies["dlp"].Marshal())
		code := f.code(ft, uid(2), t0)
		add("EnrolmentCode")(code.Marshal(), nil)
		add("EnrolmentCodeText")([]byte(code.Text()), nil)
		codeV1 := *code // version 1: no issue time
		codeV1.IssuedAt = time.Time{}
		add("EnrolmentCode")(codeV1.Marshal(), nil)
		add("EnrolmentCodeText")([]byte(codeV1.Text()), nil)
		d := f.newDevice(ft)
		req := f.request(ft, code, d)
		add("EnrolmentRequest")(req.Marshal())
		for i, k := range f.admins {
			a := must(ApproveByAdmin(k, uid(2), req))
			add("Approval")(a.Marshal())
			if i == 0 {
				dev := must(ApproveByDevice(d.id.Signing, DeviceID{1}, uid(2), req))
				add("Approval")(dev.Marshal())
			}
		}
		r := must(f.t.RevokeDevice(aid(1), uid(2), sortedDevices(f.t.users[uid(2)])[0], ReasonCompromised, t0))
		add("Revocation")(r.Revocation.Marshal())
		add("WipeInstruction")(r.Wipe.Marshal())
		add("Entry")(r.Entry.Marshal())
		publish()
		next := must(GenerateMemorySigner(f.rnd))
		prop := must(f.t.ProposeCA(next.Public(), t0))
		var aps []*Approval
		for _, k := range f.admins[:2] {
			aps = append(aps, must(ApproveTrustBundle(k, prop)))
		}
		must(f.t.RotateCA(prop, aps, next, t0))
		add("TenantState")(f.t.MarshalBinary())
		add("TenantRecords")(frameRecords(must(f.t.StateRecords())), nil)
		publish()
		add("TenantState")(f.t.MarshalBinary())
		add("TenantRecords")(frameRecords(must(f.t.StateRecords())), nil)
		corpusData, corpusFix = c, f
	})
	return corpusData
}

func checkDecodeError(t *testing.T, name string, err error) {
	t.Helper()
	var ke *KeyError
	if !errors.Is(err, ErrMalformed) && !errors.As(err, &ke) {
		t.Fatalf("%s: unexpected error type %T: %v", name, err, err)
	}
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
	for _, cd := range codecs {
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
				// Truncations and a trailing byte never parse.
				step := 1 + len(s)/97
				for n := 0; n < len(s); n += step {
					if _, err := cd.roundTrip(s[:n]); err == nil {
						t.Fatalf("truncation to %d of %d bytes parsed", n, len(s))
					}
				}
				if _, err := cd.roundTrip(append(bytes.Clone(s), 0)); err == nil {
					t.Fatal("trailing byte parsed")
				}
				// Single-byte changes parse only to themselves.
				stride := 1 + len(s)/211
				for i := 0; i < len(s); i += stride {
					m := bytes.Clone(s)
					m[i] ^= 0x80
					checkRoundTrip(t, cd, m)
				}
			}
		})
	}
}

// TestDecodersRandomMutations is a deterministic, uninstrumented sweep of
// random mutations (byte changes, insertions, deletions) of every corpus
// encoding through every decoder, checking the round-trip property. It
// complements the fuzz targets, whose instrumented runs are slow on
// inputs that carry ML-DSA keys.
func TestDecodersRandomMutations(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 200
	}
	c := corpus(t)
	r := rand.New(rand.NewPCG(0x6f7267, 1))
	for _, cd := range codecs {
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
	for _, c := range codecs {
		if c.name == name {
			cd = c
		}
	}
	for _, s := range corpus(f)[name] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip(t, cd, data) })
}

func FuzzParseDeviceCertificate(f *testing.F) { fuzzCodec(f, "DeviceCertificate") }
func FuzzParseTrustBundle(f *testing.F)       { fuzzCodec(f, "TrustBundle") }
func FuzzParseEnrolmentCode(f *testing.F)     { fuzzCodec(f, "EnrolmentCode") }
func FuzzParseEnrolmentCodeText(f *testing.F) { fuzzCodec(f, "EnrolmentCodeText") }
func FuzzParseEnrolmentRequest(f *testing.F)  { fuzzCodec(f, "EnrolmentRequest") }
func FuzzParseApproval(f *testing.F)          { fuzzCodec(f, "Approval") }
func FuzzParseCARotation(f *testing.F)        { fuzzCodec(f, "CARotation") }
func FuzzParseAdminRoster(f *testing.F)       { fuzzCodec(f, "AdminRoster") }
func FuzzParseOrgChart(f *testing.F)          { fuzzCodec(f, "OrgChart") }
func FuzzParsePolicyBundle(f *testing.F)      { fuzzCodec(f, "PolicyBundle") }
func FuzzParseEscrowPolicy(f *testing.F)      { fuzzCodec(f, "EscrowPolicy") }
func FuzzParseRevocation(f *testing.F)        { fuzzCodec(f, "Revocation") }
func FuzzParseWipeInstruction(f *testing.F)   { fuzzCodec(f, "WipeInstruction") }
func FuzzParseEntry(f *testing.F)             { fuzzCodec(f, "Entry") }
func FuzzParseUserValue(f *testing.F)         { fuzzCodec(f, "UserValue") }
func FuzzUnmarshalTenant(f *testing.F)        { fuzzCodec(f, "TenantState") }
func FuzzTenantLoader(f *testing.F)           { fuzzCodec(f, "TenantRecords") }

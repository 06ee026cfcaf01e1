package keys

// Round trips and fuzz targets for every public-key decoder, and the
// handling rules of docs/spec/keys.md §Handling (redacted printing, Equal).
//
// Key types are not comparable with ==: each embeds noCompare ([0]func()),
// so `a == b` on two key values does not compile (TestKeyTypesIncomparable
// checks it with reflect); pointers to keys compare by identity, so use
// Equal.

import (
	"bytes"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/internal/pqc"
)

// testRand returns a deterministic io.Reader for key generation in tests.
func testRand(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

// Text parsers for the types whose text parser is not exported, built from
// the same internal pieces as the exported ones, so that every type's String
// can be round-tripped and fuzzed.

func testParseX25519Text[R x25519Role](s string) (*x25519PublicOf[R], error) {
	return parseX25519TextOf[R](s)
}

func testParseKEMText[R kemRole](s string) (*kemPublicOf[R], error) {
	var r R
	raw, err := decodeText(r.tag(), s, KEMPublicKeySize)
	if err != nil {
		return nil, err
	}
	return newKEMPublicOf[R](raw)
}

func testParseHybridText[R hybridRole](s string) (*hybridPublicOf[R], error) {
	var r R
	raw, err := decodeText(r.tag(), s, hybridPublicSize)
	if err != nil {
		return nil, err
	}
	return newHybridPublicOf[R](raw)
}

// publicKey is the common shape of every public key type K.
type publicKey[K any] interface {
	Bytes() []byte
	String() string
	Equal(K) bool
}

// codec bundles one public key type's decoders.
type codec[K publicKey[K]] struct {
	tag       Tag
	parse     func([]byte) (K, error) // binary
	parseText func(string) (K, error)
	newRaw    func([]byte) (K, error) // nil if the type has no exported raw constructor
}

func isNilKey(k any) bool {
	v := reflect.ValueOf(k)
	return !v.IsValid() || (v.Kind() == reflect.Pointer && v.IsNil())
}

var decodeErrors = []error{ErrWrongType, ErrMalformed, ErrNonCanonical, ErrLowOrder, ErrInvalidKEMKey}

func checkDecodeError(t *testing.T, what string, k any, err error) {
	t.Helper()
	if !isNilKey(k) {
		t.Fatalf("%s: returned a key with error %v", what, err)
	}
	for _, e := range decodeErrors {
		if err == e {
			return
		}
	}
	t.Fatalf("%s: unexpected error %v", what, err)
}

// checkBinary asserts parse(b) ok ⇒ Bytes() == b, String round-trips, and the
// key does not alias b. It reports whether b parsed.
func (c codec[K]) checkBinary(t *testing.T, b []byte) bool {
	t.Helper()
	in := bytes.Clone(b)
	k, err := c.parse(in)
	if c.newRaw != nil && len(b) > 0 && Tag(b[0]) == c.tag {
		k2, err2 := c.newRaw(b[1:])
		if err2 != err || (err == nil && !k2.Equal(k)) {
			t.Fatalf("parse and raw constructor disagree on %x: %v vs %v", b, err, err2)
		}
	}
	if err != nil {
		checkDecodeError(t, "parse", k, err)
		return false
	}
	for i := range in {
		in[i] ^= 0xff
	}
	if got := k.Bytes(); !bytes.Equal(got, b) {
		t.Fatalf("parse(%x).Bytes() = %x", b, got)
	}
	s := k.String()
	k2, err := c.parseText(s)
	if err != nil {
		t.Fatalf("parseText(String()) = %v for %q", err, s)
	}
	if !k2.Equal(k) || k2.String() != s || !bytes.Equal(k2.Bytes(), b) {
		t.Fatalf("text round trip of %x changed the key", b)
	}
	return true
}

// checkText asserts parseText(s) ok ⇒ String() == s and the binary encoding
// round-trips.
func (c codec[K]) checkText(t *testing.T, s string) bool {
	t.Helper()
	k, err := c.parseText(s)
	if err != nil {
		checkDecodeError(t, "parseText", k, err)
		return false
	}
	if got := k.String(); got != s {
		t.Fatalf("parseText(%q).String() = %q", s, got)
	}
	b := k.Bytes()
	k2, err := c.parse(b)
	if err != nil || !k2.Equal(k) || k2.String() != s {
		t.Fatalf("binary round trip of %q failed: %v", s, err)
	}
	return true
}

// Codecs for all twelve public key types.
var (
	codecIdentitySigning = codec[*IdentitySigningPublicKey]{TagIdentitySigning, ParseIdentitySigningPublicKey, ParseIdentitySigningPublicKeyText, NewIdentitySigningPublicKey}
	codecIdentityDH      = codec[*IdentityDHPublicKey]{TagIdentityDH, ParseIdentityDHPublicKey, ParseIdentityDHPublicKeyText, NewIdentityDHPublicKey}
	codecSignedPrekey    = codec[*SignedPrekeyPublicKey]{TagSignedPrekey, ParseSignedPrekeyPublicKey, testParseX25519Text[roleSignedPrekey], nil}
	codecOneTimePrekey   = codec[*OneTimePrekeyPublicKey]{TagOneTimePrekey, ParseOneTimePrekeyPublicKey, testParseX25519Text[roleOneTimePrekey], nil}
	codecKEMPrekey       = codec[*KEMPrekeyPublicKey]{TagKEMPrekey, ParseKEMPrekeyPublicKey, testParseKEMText[roleKEMPrekey], NewKEMPrekeyPublicKey}
	codecRatchetDH       = codec[*RatchetDHPublicKey]{TagRatchetDH, ParseRatchetDHPublicKey, testParseX25519Text[roleRatchetDH], NewRatchetDHPublicKey}
	codecRatchetKEM      = codec[*RatchetKEMPublicKey]{TagRatchetKEM, ParseRatchetKEMPublicKey, testParseKEMText[roleRatchetKEM], NewRatchetKEMPublicKey}
	codecEphemeralDH     = codec[*EphemeralDHPublicKey]{TagEphemeralDH, ParseEphemeralDHPublicKey, testParseX25519Text[roleEphemeralDH], NewEphemeralDHPublicKey}
	codecOrg             = codec[*OrgPublicKey]{TagOrgSigning, ParseOrgPublicKey, testParseHybridText[roleOrg], nil}
	codecDirectory       = codec[*DirectoryPublicKey]{TagDirectorySign, ParseDirectoryPublicKey, testParseHybridText[roleDirectory], nil}
	codecLog             = codec[*LogPublicKey]{TagLogSigning, ParseLogPublicKey, testParseHybridText[roleLog], nil}
	codecSealedSender    = codec[*SealedSenderPublicKey]{TagSealedSender, ParseSealedSenderPublicKey, ParseSealedSenderPublicKeyText, NewSealedSenderPublicKey}
	codecRelay           = codec[*RelaySigningPublicKey]{TagRelaySigning, ParseRelaySigningPublicKey, ParseRelaySigningPublicKeyText, NewRelaySigningPublicKey}
)

// sampleKeys holds one generated key pair of every type (deterministic).
type sampleKeys struct {
	idSig    *IdentitySigningPrivateKey
	idDH     *IdentityDHPrivateKey
	spk      *SignedPrekeyPrivateKey
	opk      *OneTimePrekeyPrivateKey
	kem      *KEMPrekeyPrivateKey
	rdh      *RatchetDHPrivateKey
	rkem     *RatchetKEMPrivateKey
	eph      *EphemeralDHPrivateKey
	ssk      *SealedSenderPrivateKey
	relay    *RelaySigningPrivateKey
	org      *OrgPrivateKey
	dir      *DirectoryPrivateKey
	log      *LogPrivateKey
	binaries map[Tag][]byte
	texts    map[Tag]string
}

func newSampleKeys(t testing.TB, seed byte) *sampleKeys {
	t.Helper()
	r := testRand(seed)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var s sampleKeys
	var err error
	s.idSig, err = GenerateIdentitySigningKey(r)
	must(err)
	s.idDH, err = GenerateIdentityDHKey(r)
	must(err)
	s.spk, err = GenerateSignedPrekeyKey(r)
	must(err)
	s.opk, err = GenerateOneTimePrekey(r)
	must(err)
	s.kem, err = GenerateKEMPrekeyKey(r)
	must(err)
	s.rdh, err = GenerateRatchetDHKey(r)
	must(err)
	s.rkem, err = GenerateRatchetKEMKey(r)
	must(err)
	s.eph, err = GenerateEphemeralDHKey(r)
	must(err)
	s.ssk, err = GenerateSealedSenderKey(r)
	must(err)
	s.relay, err = GenerateRelaySigningKey(r)
	must(err)
	s.org, err = GenerateOrgKey(r)
	must(err)
	s.dir, err = GenerateDirectoryKey(r)
	must(err)
	s.log, err = GenerateLogKey(r)
	must(err)
	type enc interface {
		Bytes() []byte
		String() string
	}
	s.binaries, s.texts = map[Tag][]byte{}, map[Tag]string{}
	for tag, k := range map[Tag]enc{
		TagIdentitySigning: s.idSig.Public(), TagIdentityDH: s.idDH.Public(),
		TagSignedPrekey: s.spk.Public(), TagOneTimePrekey: s.opk.Public(),
		TagKEMPrekey: s.kem.Public(), TagRatchetDH: s.rdh.Public(),
		TagRatchetKEM: s.rkem.Public(), TagEphemeralDH: s.eph.Public(), TagSealedSender: s.ssk.Public(),
		TagOrgSigning: s.org.Public(), TagDirectorySign: s.dir.Public(), TagLogSigning: s.log.Public(),
		TagRelaySigning: s.relay.Public(),
	} {
		s.binaries[tag], s.texts[tag] = k.Bytes(), k.String()
	}
	if len(s.binaries) != len(prefixes) {
		t.Fatalf("sample keys cover %d types, prefixes has %d", len(s.binaries), len(prefixes))
	}
	return &s
}

// encodedLen is the size of a tag's raw key.
func rawLen(tag Tag) int {
	switch tag {
	case TagIdentitySigning, TagIdentityDH, TagSignedPrekey, TagOneTimePrekey, TagRatchetDH, TagEphemeralDH, TagRelaySigning:
		return 32
	case TagKEMPrekey, TagRatchetKEM:
		return KEMPublicKeySize
	case TagOrgSigning, TagDirectorySign, TagLogSigning:
		return hybridPublicSize
	case TagSealedSender:
		return SealedSenderPublicKeySize
	}
	panic("unknown tag")
}

// binarySeeds returns seeds for a binary fuzz target: every sample
// encoding, their truncations and extensions, and edge cases.
func binarySeeds(t testing.TB, tag Tag) [][]byte {
	var out [][]byte
	for _, seed := range []byte{1, 2} {
		s := newSampleKeys(t, seed)
		for _, b := range s.binaries {
			out = append(out, b, b[:len(b)-1], append(bytes.Clone(b), 0), b[:1])
		}
	}
	out = append(out, nil, []byte{}, []byte{byte(tag)}, []byte{0x00}, []byte{0xff},
		append([]byte{byte(tag)}, make([]byte, rawLen(tag))...),
		append([]byte{byte(tag)}, bytes.Repeat([]byte{0xff}, rawLen(tag))...))
	return out
}

func textSeeds(t testing.TB, tag Tag) []string {
	var out []string
	s := newSampleKeys(t, 1)
	for _, txt := range s.texts {
		out = append(out, txt, txt[:len(txt)-1], txt+"A", strings.ToUpper(txt), txt+"\n", nonCanonicalBase64(txt))
	}
	p := prefixes[tag]
	out = append(out, "", p, p[:len(p)-1], p+strings.Repeat("A", base64.RawURLEncoding.EncodedLen(rawLen(tag))),
		p+strings.Repeat("_", base64.RawURLEncoding.EncodedLen(rawLen(tag))),
		p+base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, rawLen(tag))),
		p+base64.URLEncoding.EncodeToString(s.binaries[tag][1:]))
	return out
}

// TestEncodingRoundTrip checks every type's binary and text encodings of
// generated keys round-trip through its decoders, and the seed corpus
// through the fuzz properties.
func TestEncodingRoundTrip(t *testing.T) {
	for _, seed := range []byte{1, 2, 3} {
		s := newSampleKeys(t, seed)
		checks := []struct {
			tag  Tag
			bin  func(*testing.T, []byte) bool
			text func(*testing.T, string) bool
		}{
			{TagIdentitySigning, codecIdentitySigning.checkBinary, codecIdentitySigning.checkText},
			{TagIdentityDH, codecIdentityDH.checkBinary, codecIdentityDH.checkText},
			{TagSignedPrekey, codecSignedPrekey.checkBinary, codecSignedPrekey.checkText},
			{TagOneTimePrekey, codecOneTimePrekey.checkBinary, codecOneTimePrekey.checkText},
			{TagKEMPrekey, codecKEMPrekey.checkBinary, codecKEMPrekey.checkText},
			{TagRatchetDH, codecRatchetDH.checkBinary, codecRatchetDH.checkText},
			{TagRatchetKEM, codecRatchetKEM.checkBinary, codecRatchetKEM.checkText},
			{TagEphemeralDH, codecEphemeralDH.checkBinary, codecEphemeralDH.checkText},
			{TagOrgSigning, codecOrg.checkBinary, codecOrg.checkText},
			{TagDirectorySign, codecDirectory.checkBinary, codecDirectory.checkText},
			{TagLogSigning, codecLog.checkBinary, codecLog.checkText},
			{TagSealedSender, codecSealedSender.checkBinary, codecSealedSender.checkText},
			{TagRelaySigning, codecRelay.checkBinary, codecRelay.checkText},
		}
		if len(checks) != len(prefixes) {
			t.Fatalf("%d codecs for %d types", len(checks), len(prefixes))
		}
		for _, c := range checks {
			if !c.bin(t, s.binaries[c.tag]) {
				t.Errorf("tag %#x: generated key's binary encoding rejected", c.tag)
			}
			if !c.text(t, s.texts[c.tag]) {
				t.Errorf("tag %#x: generated key's text encoding rejected", c.tag)
			}
			if got := s.binaries[c.tag]; got[0] != byte(c.tag) || len(got) != 1+rawLen(c.tag) {
				t.Errorf("tag %#x: binary encoding has tag %#x and length %d", c.tag, got[0], len(got))
			}
			if got := s.texts[c.tag]; !strings.HasPrefix(got, prefixes[c.tag]) {
				t.Errorf("tag %#x: text encoding %q lacks prefix %q", c.tag, got, prefixes[c.tag])
			}
			for _, b := range binarySeeds(t, c.tag) {
				c.bin(t, b)
			}
			for _, txt := range textSeeds(t, c.tag) {
				c.text(t, txt)
			}
		}
	}
}

// nonCanonicalBase64 flips the lowest bit of the last character of a text
// encoding's body: that bit is padding for every raw key size Moat uses, so
// the result decodes to the same bytes under a lax decoder but is not the
// canonical encoding.
func nonCanonicalBase64(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[last^1])
}

// TestTextNonCanonicalBase64 checks that the text decoders reject base64
// with non-zero padding bits, newlines and padding characters.
func TestTextNonCanonicalBase64(t *testing.T) {
	s := newSampleKeys(t, 4)
	for _, tag := range []Tag{TagIdentitySigning, TagIdentityDH, TagKEMPrekey, TagOrgSigning} {
		txt := s.texts[tag]
		body := txt[len(prefixes[tag]):]
		for name, bad := range map[string]string{
			"non-zero padding bits": nonCanonicalBase64(txt),
			"newline inside":        txt[:len(txt)-3] + "\n" + txt[len(txt)-3:],
			"trailing newline":      txt + "\n",
			"newline for a char":    txt[:len(txt)-5] + "\n" + txt[len(txt)-4:],
			"padding character":     txt + "=",
			"standard alphabet":     prefixes[tag] + strings.NewReplacer("-", "+", "_", "/").Replace(body),
		} {
			if name == "standard alphabet" && !strings.ContainsAny(body, "-_") {
				continue
			}
			var err error
			switch tag {
			case TagIdentitySigning:
				_, err = ParseIdentitySigningPublicKeyText(bad)
			case TagIdentityDH:
				_, err = ParseIdentityDHPublicKeyText(bad)
			case TagKEMPrekey:
				_, err = testParseKEMText[roleKEMPrekey](bad)
			case TagOrgSigning:
				_, err = testParseHybridText[roleOrg](bad)
			}
			if err != ErrMalformed {
				t.Errorf("tag %#x, %s: %v, want ErrMalformed", tag, name, err)
			}
		}
	}
}

// TestPrefixesDistinct checks the §Text encoding rule that no prefix is a
// prefix of another (which decodeText's ErrWrongType detection relies on).
func TestPrefixesDistinct(t *testing.T) {
	for a, pa := range prefixes {
		if !strings.HasSuffix(pa, ":") {
			t.Errorf("prefix %q does not end in ':'", pa)
		}
		for b, pb := range prefixes {
			if a != b && strings.HasPrefix(pa, pb) {
				t.Errorf("prefix %q has prefix %q", pa, pb)
			}
		}
	}
}

func fuzzBinary[K publicKey[K]](f *testing.F, c codec[K]) {
	for _, b := range binarySeeds(f, c.tag) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { c.checkBinary(t, b) })
}

func fuzzText[K publicKey[K]](f *testing.F, c codec[K]) {
	for _, s := range textSeeds(f, c.tag) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { c.checkText(t, s) })
}

func FuzzParseIdentitySigningPublicKey(f *testing.F) { fuzzBinary(f, codecIdentitySigning) }
func FuzzParseIdentitySigningPublicKeyText(f *testing.F) {
	fuzzText(f, codecIdentitySigning)
}
func FuzzParseIdentityDHPublicKey(f *testing.F)     { fuzzBinary(f, codecIdentityDH) }
func FuzzParseIdentityDHPublicKeyText(f *testing.F) { fuzzText(f, codecIdentityDH) }
func FuzzParseSignedPrekeyPublicKey(f *testing.F)   { fuzzBinary(f, codecSignedPrekey) }
func FuzzParseOneTimePrekeyPublicKey(f *testing.F)  { fuzzBinary(f, codecOneTimePrekey) }
func FuzzParseKEMPrekeyPublicKey(f *testing.F)      { fuzzBinary(f, codecKEMPrekey) }
func FuzzParseRatchetKEMPublicKey(f *testing.F)     { fuzzBinary(f, codecRatchetKEM) }

func FuzzParseRatchetDHPublicKey(f *testing.F)   { fuzzBinary(f, codecRatchetDH) }
func FuzzParseEphemeralDHPublicKey(f *testing.F) { fuzzBinary(f, codecEphemeralDH) }
func FuzzParseOrgPublicKey(f *testing.F)         { fuzzBinary(f, codecOrg) }
func FuzzParseDirectoryPublicKey(f *testing.F)   { fuzzBinary(f, codecDirectory) }
func FuzzParseLogPublicKey(f *testing.F)         { fuzzBinary(f, codecLog) }

// FuzzParseKeyText fuzzes the text decoders of the types without an exported
// text parser, all at once.
func FuzzParseKeyText(f *testing.F) {
	for _, tag := range []Tag{TagSignedPrekey, TagKEMPrekey, TagOrgSigning} {
		for _, s := range textSeeds(f, tag) {
			f.Add(s)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		codecSignedPrekey.checkText(t, s)
		codecOneTimePrekey.checkText(t, s)
		codecKEMPrekey.checkText(t, s)
		codecRatchetDH.checkText(t, s)
		codecRatchetKEM.checkText(t, s)
		codecEphemeralDH.checkText(t, s)
		codecOrg.checkText(t, s)
		codecDirectory.checkText(t, s)
		codecLog.checkText(t, s)
	})
}

// TestPrivateKeysRedacted prints every private key type with common verbs,
// directly and nested, and checks that no form of its secret material
// appears (docs/spec/keys.md §Handling).
//
// fmt reaches a key's Format method when it prints the key itself (pointer
// or value) or finds it in an exported field, a slice, a map or an
// interface; it then prints the redaction. Through an unexported struct
// field fmt cannot call methods and prints the fields instead, where the
// keys keep their secret material behind pointers, which fmt prints as
// addresses. One gap remains and is excluded below, documented in §Handling:
// for a key held by value in an unexported field, a verb that is invalid
// for pointers (%s, %q) makes fmt print what the nested pointers point to.
func TestPrivateKeysRedacted(t *testing.T) {
	s := newSampleKeys(t, 7)
	type item struct {
		name    string
		key     any // pointer
		val     any // value
		secrets [][]byte
	}
	// The ML-DSA-65 private key is ρ || K || tr || s₁ || s₂ || t₀; ρ and tr
	// are public, so search for K and the start of s₁.
	mldsaSecrets := func(b []byte) [][]byte { return [][]byte{b[32:64], b[128:192]} }
	items := []item{
		{"IdentitySigningPrivateKey", s.idSig, *s.idSig, [][]byte{s.idSig.Seed()}},
		{"IdentityDHPrivateKey", s.idDH, *s.idDH, [][]byte{s.idDH.Bytes()}},
		{"SignedPrekeyPrivateKey", s.spk, *s.spk, [][]byte{s.spk.Bytes()}},
		{"OneTimePrekeyPrivateKey", s.opk, *s.opk, [][]byte{s.opk.Bytes()}},
		{"RatchetDHPrivateKey", s.rdh, *s.rdh, [][]byte{s.rdh.Bytes()}},
		{"EphemeralDHPrivateKey", s.eph, *s.eph, [][]byte{s.eph.Bytes()}},
		{"KEMPrekeyPrivateKey", s.kem, *s.kem, [][]byte{s.kem.Seed(), packedDK(s.kem)[:1152]}},
		{"RatchetKEMPrivateKey", s.rkem, *s.rkem, [][]byte{s.rkem.Seed()}},
		{"OrgPrivateKey", s.org, *s.org, append([][]byte{s.org.Seed()}, mldsaSecrets(s.org.pq.Bytes())...)},
		{"DirectoryPrivateKey", s.dir, *s.dir, append([][]byte{s.dir.Seed()}, mldsaSecrets(s.dir.pq.Bytes())...)},
		{"LogPrivateKey", s.log, *s.log, [][]byte{s.log.Seed()}},
		{"SealedSenderPrivateKey", s.ssk, *s.ssk, [][]byte{s.ssk.Seed()}},
		{"DeviceIdentityPrivate", &DeviceIdentityPrivate{Signing: s.idSig, DH: s.idDH},
			DeviceIdentityPrivate{Signing: s.idSig, DH: s.idDH}, [][]byte{s.idSig.Seed(), s.idDH.Bytes()}},
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "% x", "%d", "%100v", "%-8s"}
	pointerVerbs := map[string]bool{"%v": true, "%+v": true, "%#v": true, "%x": true, "%X": true, "% x": true, "%d": true, "%100v": true}
	type unexported struct{ k any }
	for _, it := range items {
		var forbidden []string
		for _, sec := range it.secrets {
			if len(sec) < 16 {
				t.Fatalf("%s: secret too short to search for", it.name)
			}
			dec := strings.Trim(fmt.Sprint(sec), "[]")
			forbidden = append(forbidden,
				string(sec), hex.EncodeToString(sec), strings.ToUpper(hex.EncodeToString(sec)),
				hex.EncodeToString(sec[:8]), strings.ToUpper(hex.EncodeToString(sec[:8])),
				fmt.Sprintf("% x", sec[:8]), dec[:len(dec)/2],
				base64.StdEncoding.EncodeToString(sec[:12]), base64.RawURLEncoding.EncodeToString(sec[:12]))
		}
		forms := []struct {
			name          string
			v             any
			reachesFormat bool // fmt calls Format: the output says "redacted"
			pointerOnly   bool // only verbs valid for pointers are guaranteed
		}{
			{"pointer", it.key, true, false},
			{"value", it.val, true, false},
			{"pointer in slice", []any{it.key}, true, false},
			{"value in slice", []any{it.val}, true, false},
			{"pointer in exported field", struct{ K any }{it.key}, true, false},
			{"pointer in map", map[string]any{"k": it.key}, true, false},
			{"pointer in unexported field", unexported{it.key}, false, false},
			{"value in unexported field", unexported{it.val}, false, true},
		}
		for _, form := range forms {
			outs := map[string]string{"Sprint": fmt.Sprint(form.v), "Sprintln": fmt.Sprintln(form.v)}
			for _, verb := range verbs {
				if form.pointerOnly && !pointerVerbs[verb] {
					continue
				}
				outs[verb] = fmt.Sprintf(verb, form.v)
			}
			for how, out := range outs {
				// DeviceIdentityPrivate is a plain struct of key pointers:
				// printed directly its fields are redacted; nested, fmt
				// prints only its address. Both are fine.
				if form.reachesFormat && it.name != "DeviceIdentityPrivate" && !strings.Contains(out, "redacted") {
					t.Errorf("%s, %s, %s: %q is not redacted", it.name, form.name, how, out)
				}
				for _, f := range forbidden {
					if strings.Contains(out, f) {
						t.Errorf("%s, %s, %s: output contains secret material %q", it.name, form.name, how, f)
					}
				}
			}
		}
	}
}

// TestEqual checks Equal on every key type: a key equals itself and a copy
// re-derived from the same material, and not a different key.
func TestEqual(t *testing.T) {
	a, b := newSampleKeys(t, 1), newSampleKeys(t, 2)
	a2 := newSampleKeys(t, 1)
	check := func(name string, self, same, other bool) {
		t.Helper()
		if !self || !same || other {
			t.Errorf("%s: Equal(self)=%v Equal(same material)=%v Equal(other)=%v", name, self, same, other)
		}
	}
	check("IdentitySigningPrivateKey", a.idSig.Equal(a.idSig), a.idSig.Equal(a2.idSig), a.idSig.Equal(b.idSig))
	check("IdentitySigningPublicKey", a.idSig.Public().Equal(a.idSig.Public()), a.idSig.Public().Equal(a2.idSig.Public()), a.idSig.Public().Equal(b.idSig.Public()))
	check("IdentityDHPrivateKey", a.idDH.Equal(a.idDH), a.idDH.Equal(a2.idDH), a.idDH.Equal(b.idDH))
	check("IdentityDHPublicKey", a.idDH.Public().Equal(a.idDH.Public()), a.idDH.Public().Equal(a2.idDH.Public()), a.idDH.Public().Equal(b.idDH.Public()))
	check("SignedPrekeyPrivateKey", a.spk.Equal(a.spk), a.spk.Equal(a2.spk), a.spk.Equal(b.spk))
	check("OneTimePrekeyPublicKey", a.opk.Public().Equal(a.opk.Public()), a.opk.Public().Equal(a2.opk.Public()), a.opk.Public().Equal(b.opk.Public()))
	check("RatchetDHPrivateKey", a.rdh.Equal(a.rdh), a.rdh.Equal(a2.rdh), a.rdh.Equal(b.rdh))
	check("EphemeralDHPublicKey", a.eph.Public().Equal(a.eph.Public()), a.eph.Public().Equal(a2.eph.Public()), a.eph.Public().Equal(b.eph.Public()))
	check("KEMPrekeyPrivateKey", a.kem.Equal(a.kem), a.kem.Equal(a2.kem), a.kem.Equal(b.kem))
	check("KEMPrekeyPublicKey", a.kem.Public().Equal(a.kem.Public()), a.kem.Public().Equal(a2.kem.Public()), a.kem.Public().Equal(b.kem.Public()))
	check("RatchetKEMPrivateKey", a.rkem.Equal(a.rkem), a.rkem.Equal(a2.rkem), a.rkem.Equal(b.rkem))
	check("OrgPublicKey", a.org.Public().Equal(a.org.Public()), a.org.Public().Equal(a2.org.Public()), a.org.Public().Equal(b.org.Public()))
	check("LogPublicKey", a.log.Public().Equal(a.log.Public()), a.log.Public().Equal(a2.log.Public()), a.log.Public().Equal(b.log.Public()))
	check("SealedSenderPrivateKey", a.ssk.Equal(a.ssk), a.ssk.Equal(a2.ssk), a.ssk.Equal(b.ssk))
	check("SealedSenderPublicKey", a.ssk.Public().Equal(a.ssk.Public()), a.ssk.Public().Equal(a2.ssk.Public()), a.ssk.Public().Equal(b.ssk.Public()))

	// A parsed key equals the generated one.
	p, err := ParseKEMPrekeyPublicKey(a.kem.Public().Bytes())
	if err != nil || !p.Equal(a.kem.Public()) {
		t.Errorf("parsed KEM key not Equal to the original: %v", err)
	}
	// Private keys re-imported from their serialised form are Equal.
	x, err := NewIdentityDHPrivateKey(a.idDH.Bytes())
	if err != nil || !x.Equal(a.idDH) || !x.Public().Equal(a.idDH.Public()) {
		t.Errorf("re-imported X25519 key not Equal: %v", err)
	}
	e, err := NewIdentitySigningKeyFromSeed(a.idSig.Seed())
	if err != nil || !e.Equal(a.idSig) {
		t.Errorf("re-imported Ed25519 key not Equal: %v", err)
	}
	o, err := NewOrgPrivateKey(a.org.Seed())
	if err != nil || !o.Public().Equal(a.org.Public()) {
		t.Errorf("re-imported org key not Equal: %v", err)
	}

	ida := DeviceIdentity{Signing: a.idSig.Public(), DH: a.idDH.Public()}
	if !ida.Equal(DeviceIdentity{Signing: a2.idSig.Public(), DH: a2.idDH.Public()}) ||
		ida.Equal(DeviceIdentity{Signing: a.idSig.Public(), DH: b.idDH.Public()}) ||
		ida.Equal(DeviceIdentity{Signing: b.idSig.Public(), DH: a.idDH.Public()}) {
		t.Error("DeviceIdentity.Equal is wrong")
	}
}

// TestImportLengths checks that every raw constructor rejects wrong lengths
// with ErrMalformed.
func TestImportLengths(t *testing.T) {
	for _, n := range []int{0, 1, 31, 33, 63, 65, 1183, 1185} {
		b := make([]byte, n)
		for i := range b {
			b[i] = 9
		}
		errs := map[string]error{}
		_, errs["NewIdentitySigningPublicKey"] = NewIdentitySigningPublicKey(b)
		_, errs["NewIdentitySigningKeyFromSeed"] = NewIdentitySigningKeyFromSeed(b)
		_, errs["NewIdentityDHPublicKey"] = NewIdentityDHPublicKey(b)
		_, errs["NewIdentityDHPrivateKey"] = NewIdentityDHPrivateKey(b)
		_, errs["NewRatchetDHPublicKey"] = NewRatchetDHPublicKey(b)
		_, errs["NewEphemeralDHPublicKey"] = NewEphemeralDHPublicKey(b)
		_, errs["NewKEMPrekeyPublicKey"] = NewKEMPrekeyPublicKey(b)
		_, errs["NewKEMPrekeyPrivateKey"] = NewKEMPrekeyPrivateKey(b)
		_, errs["NewRatchetKEMPrivateKey"] = NewRatchetKEMPrivateKey(b)
		_, errs["NewOrgPrivateKey"] = NewOrgPrivateKey(b)
		_, errs["NewSealedSenderPublicKey"] = NewSealedSenderPublicKey(b)
		_, errs["NewSealedSenderPrivateKey"] = NewSealedSenderPrivateKey(b)
		for name, err := range errs {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s(%d bytes) = %v, want ErrMalformed", name, n, err)
			}
		}
	}
}

// TestSpecExamples checks the examples, sizes and signed-message layouts
// given in docs/spec/keys.md.
func TestSpecExamples(t *testing.T) {
	edPub, _ := hex.DecodeString("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
	ed, err := NewIdentitySigningPublicKey(edPub)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(ed.Bytes()); got != "01d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a" {
		t.Errorf("Ed25519 binary example: %s", got)
	}
	if got := ed.String(); got != "moat-idsig1:11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" {
		t.Errorf("Ed25519 text example: %s", got)
	}
	xPub, _ := hex.DecodeString("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	x, err := NewIdentityDHPublicKey(xPub)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(x.Bytes()); got != "028520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a" {
		t.Errorf("X25519 binary example: %s", got)
	}
	if got := x.String(); got != "moat-iddh1:hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo" {
		t.Errorf("X25519 text example: %s", got)
	}

	for name, c := range map[string][2]int{
		"ML-KEM-768 ek":         {KEMPublicKeySize, 1184},
		"ML-KEM-768 ciphertext": {KEMCiphertextSize, 1088},
		"ML-KEM-768 seed":       {KEMSeedSize, 64},
		"hybrid public key":     {hybridPublicSize, 1984},
		"hybrid signature":      {HybridSignatureSize, 3373},
		"hybrid seed":           {HybridSeedSize, 64},
		"text, 32 bytes":        {base64.RawURLEncoding.EncodedLen(32), 43},
		"text, 1184 bytes":      {base64.RawURLEncoding.EncodedLen(1184), 1579},
		"text, 1984 bytes":      {base64.RawURLEncoding.EncodedLen(1984), 2646},
	} {
		if c[0] != c[1] {
			t.Errorf("%s: %d, spec says %d", name, c[0], c[1])
		}
	}

	s := newSampleKeys(t, 5)
	created := time.Unix(1_700_000_123, 0)
	be := func(v uint64, n int) []byte {
		b := make([]byte, n)
		for i := n - 1; i >= 0; i-- {
			b[i] = byte(v)
			v >>= 8
		}
		return b
	}
	var want []byte
	want = append(want, "moat/v1/signed-prekey"...)
	want = append(want, 0x00)
	want = append(want, be(7, 4)...)
	want = append(want, be(1_700_000_123, 8)...)
	want = append(want, s.spk.Public().Bytes()...)
	if got := SignedPrekeySigningMessage(7, created, s.spk.Public()); !bytes.Equal(got, want) {
		t.Errorf("SignedPrekeyTBS layout differs from the spec")
	}
	for _, lr := range []bool{false, true} {
		want = want[:0]
		want = append(want, "moat/v1/kem-prekey"...)
		want = append(want, 0x00)
		want = append(want, be(7, 4)...)
		want = append(want, be(1_700_000_123, 8)...)
		if lr {
			want = append(want, 0x01)
		} else {
			want = append(want, 0x00)
		}
		want = append(want, s.kem.Public().Bytes()...)
		if got := KEMPrekeySigningMessage(7, created, lr, s.kem.Public()); !bytes.Equal(got, want) {
			t.Errorf("KEMPrekeyTBS layout (last_resort %v) differs from the spec", lr)
		}
	}
	// The signed prekey signature is a plain Ed25519 signature over
	// SignedPrekeyTBS by the identity key.
	spk := SignSignedPrekey(7, created.Add(999*time.Millisecond), s.spk.Public(), s.idSig)
	if !spk.Created.Equal(created) || !ed25519.Verify(s.idSig.Public().Raw(), SignedPrekeySigningMessage(7, created, s.spk.Public()), spk.Signature) {
		t.Error("signed prekey: not an Ed25519 signature over SignedPrekeyTBS with created truncated to seconds")
	}

	// Both halves of a hybrid signature verify on their own over HybridTBS.
	msg := []byte("a checkpoint")
	for role, k := range map[string]interface {
		Sign([]byte) ([]byte, error)
	}{"org": s.org, "directory": s.dir, "log": s.log} {
		sig, err := k.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		var pub []byte
		var pq *pqc.MLDSA65PublicKey
		switch role {
		case "org":
			pub, pq = s.org.Public().ed, s.org.Public().pq
		case "directory":
			pub, pq = s.dir.Public().ed, s.dir.Public().pq
		case "log":
			pub, pq = s.log.Public().ed, s.log.Public().pq
		}
		tbs := append([]byte("moat/v1/hybrid-signature/"+role+"\x00"), msg...)
		if len(sig) != 3373 || !ed25519.Verify(pub, tbs, sig[:64]) || !pq.Verify(tbs, nil, sig[64:]) {
			t.Errorf("%s: hybrid signature halves do not verify over HybridTBS", role)
		}
	}
}

func TestHybridTextRoundTrip(t *testing.T) {
	org, err := GenerateOrgKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := GenerateLogKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := GenerateDirectoryKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := ParseOrgPublicKeyText(org.Public().String()); err != nil || !k.Equal(org.Public()) {
		t.Fatalf("org: %v", err)
	}
	if k, err := ParseLogPublicKeyText(lg.Public().String()); err != nil || !k.Equal(lg.Public()) {
		t.Fatalf("log: %v", err)
	}
	if k, err := ParseDirectoryPublicKeyText(dir.Public().String()); err != nil || !k.Equal(dir.Public()) {
		t.Fatalf("directory: %v", err)
	}
	if _, err := ParseLogPublicKeyText(org.Public().String()); !errors.Is(err, ErrWrongType) {
		t.Fatalf("org key parsed as log key: %v", err)
	}
}

// TestTextParsersEveryType: every public key type's text encoding parses
// back to the same key with its own parser and is refused, as another
// type's encoding, by every other text parser.
func TestTextParsersEveryType(t *testing.T) {
	type codec struct {
		name  string
		text  string
		parse func(string) (string, error)
	}
	str := func(k interface{ String() string }, err error) (string, error) {
		if err != nil {
			return "", err
		}
		return k.String(), nil
	}
	idsig, _ := GenerateIdentitySigningKey(crand.Reader)
	iddh, _ := GenerateIdentityDHKey(crand.Reader)
	opk, _ := GenerateOneTimePrekey(crand.Reader)
	spk, _ := GenerateSignedPrekeyKey(crand.Reader)
	rdh, _ := GenerateRatchetDHKey(crand.Reader)
	eph, _ := GenerateEphemeralDHKey(crand.Reader)
	kpk, _ := GenerateKEMPrekeyKey(crand.Reader)
	rkem, _ := GenerateRatchetKEMKey(crand.Reader)
	org, _ := GenerateOrgKey(crand.Reader)
	lg, _ := GenerateLogKey(crand.Reader)
	dir, _ := GenerateDirectoryKey(crand.Reader)
	ssk, _ := GenerateSealedSenderKey(crand.Reader)
	codecs := []codec{
		{"identity signing", idsig.Public().String(), func(s string) (string, error) { return str(ParseIdentitySigningPublicKeyText(s)) }},
		{"identity DH", iddh.Public().String(), func(s string) (string, error) { return str(ParseIdentityDHPublicKeyText(s)) }},
		{"one-time prekey", opk.Public().String(), func(s string) (string, error) { return str(ParseOneTimePrekeyPublicKeyText(s)) }},
		{"signed prekey", spk.Public().String(), func(s string) (string, error) { return str(ParseSignedPrekeyPublicKeyText(s)) }},
		{"ratchet DH", rdh.Public().String(), func(s string) (string, error) { return str(ParseRatchetDHPublicKeyText(s)) }},
		{"ephemeral DH", eph.Public().String(), func(s string) (string, error) { return str(ParseEphemeralDHPublicKeyText(s)) }},
		{"KEM prekey", kpk.Public().String(), func(s string) (string, error) { return str(ParseKEMPrekeyPublicKeyText(s)) }},
		{"ratchet KEM", rkem.Public().String(), func(s string) (string, error) { return str(ParseRatchetKEMPublicKeyText(s)) }},
		{"org", org.Public().String(), func(s string) (string, error) { return str(ParseOrgPublicKeyText(s)) }},
		{"log", lg.Public().String(), func(s string) (string, error) { return str(ParseLogPublicKeyText(s)) }},
		{"directory", dir.Public().String(), func(s string) (string, error) { return str(ParseDirectoryPublicKeyText(s)) }},
		{"sealed sender", ssk.Public().String(), func(s string) (string, error) { return str(ParseSealedSenderPublicKeyText(s)) }},
	}
	for _, c := range codecs {
		for _, d := range codecs {
			got, err := d.parse(c.text)
			if c.name == d.name {
				if err != nil || got != c.text {
					t.Errorf("%s: round trip: %v", c.name, err)
				}
			} else if !errors.Is(err, ErrWrongType) {
				t.Errorf("%s encoding parsed by the %s parser: %v", c.name, d.name, err)
			}
		}
	}
}

package prim

// Wycheproof vectors (github.com/c2sp/wycheproof, testvectors_v1) run through
// this package's wrappers only: NewAES256GCM and NewChaCha20Poly1305 with
// Seal and Open, and HKDF.
//
// Rule: a "valid" case MUST pass (Seal reproduces ct||tag, Open returns msg;
// HKDF returns okm) and an "invalid" case MUST fail (Open returns ErrOpen;
// HKDF returns an error). None of the pinned files has an "acceptable" case;
// each file has a decision table anyway (flag → outcome), empty, so that an
// acceptable case added upstream fails until it is decided here.
//
// The wrappers deliberately offer one parameter set: a 32-byte key, a 12-byte
// nonce and a 16-byte tag. A case with another key size is "not applicable"
// after the test asserts that the constructor rejects its key with
// ErrKeySize; a case with another nonce or tag size is "not applicable" after
// the test asserts that Open rejects it with ErrOpen. No other reason makes a
// case not applicable. Each file's tally is logged, and each test asserts
// that every case was visited and that at least a minimum number ran.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"testing"

	"github.com/c2sp/wycheproof"
)

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = v
	return nil
}

func loadWycheproof(t *testing.T, name string, v any) {
	t.Helper()
	b, err := fs.ReadFile(wycheproof.TestVectors, name)
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
}

type tally struct {
	name     string
	passed   int
	rejected int
	na       map[string]int
}

func (c *tally) check(t *testing.T, want, minRun int) {
	t.Helper()
	total := c.passed + c.rejected
	var na []string
	for r, n := range c.na {
		total += n
		na = append(na, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(na)
	t.Logf("%s: %d passed, %d rejected as expected, not applicable: [%s]",
		c.name, c.passed, c.rejected, strings.Join(na, "; "))
	if total != want {
		t.Errorf("%s: visited %d cases, the file declares %d", c.name, total, want)
	}
	if c.passed+c.rejected < minRun {
		t.Errorf("%s: only %d cases ran, want at least %d", c.name, c.passed+c.rejected, minRun)
	}
}

// acceptableDecisions maps a flag of an acceptable case to whether such a
// case must pass. Empty: no pinned AEAD or HKDF file has acceptable cases.
var acceptableDecisions = map[string]bool{}

// expectPass maps a case's result to whether it must pass.
func expectPass(t *testing.T, tcID int, result string, flags []string) (pass, ok bool) {
	t.Helper()
	switch result {
	case "valid":
		return true, true
	case "invalid":
		return false, true
	case "acceptable":
		pass = true
		for _, f := range flags {
			d, known := acceptableDecisions[f]
			if !known {
				t.Errorf("tcId %d: acceptable flag %q has no decision", tcID, f)
				return false, false
			}
			pass = pass && d
		}
		return pass, true
	}
	t.Fatalf("tcId %d: unknown result %q", tcID, result)
	return false, false
}

type aeadFile struct {
	Algorithm     string `json:"algorithm"`
	NumberOfTests int    `json:"numberOfTests"`
	TestGroups    []struct {
		KeySize int `json:"keySize"`
		IVSize  int `json:"ivSize"`
		TagSize int `json:"tagSize"`
		Tests   []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Key     hexBytes `json:"key"`
			IV      hexBytes `json:"iv"`
			AAD     hexBytes `json:"aad"`
			Msg     hexBytes `json:"msg"`
			CT      hexBytes `json:"ct"`
			Tag     hexBytes `json:"tag"`
			Result  string   `json:"result"`
			Flags   []string `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func testWycheproofAEAD(t *testing.T, file string, newAEAD func([]byte) (AEAD, error), minRun int) {
	var f aeadFile
	loadWycheproof(t, file, &f)
	c := &tally{name: file, na: map[string]int{}}
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			name := fmt.Sprintf("tcId %d (%s, %v, %q; key %d, iv %d, tag %d bits)",
				tc.TcID, tc.Result, tc.Flags, tc.Comment, g.KeySize, g.IVSize, g.TagSize)
			// The InvalidNonceSize cases carry an empty tag; every other
			// case's sizes match its group header.
			if len(tc.Key)*8 != g.KeySize || len(tc.IV)*8 != g.IVSize ||
				(len(tc.Tag)*8 != g.TagSize && tc.Result != "invalid") {
				t.Fatalf("%s: sizes disagree with the group header", name)
			}
			pass, ok := expectPass(t, tc.TcID, tc.Result, tc.Flags)
			if !ok {
				continue
			}
			a, err := newAEAD(tc.Key)
			if len(tc.Key) != KeySize {
				if a != (AEAD{}) || !errors.Is(err, ErrKeySize) {
					t.Errorf("%s: constructor = %v, want ErrKeySize", name, err)
					continue
				}
				c.na[fmt.Sprintf("%d-bit key not offered (constructor returns ErrKeySize)", g.KeySize)]++
				continue
			}
			if err != nil {
				t.Errorf("%s: constructor: %v", name, err)
				continue
			}
			sealed := append(append([]byte(nil), tc.CT...), tc.Tag...)
			got, err := a.Open(nil, tc.IV, sealed, tc.AAD)
			if g.IVSize != NonceSize*8 || g.TagSize != Overhead*8 {
				// Parameter sizes the wrapper does not offer: Open must
				// refuse them, whatever the case's result.
				if got != nil || err != ErrOpen {
					t.Errorf("%s: Open = %x, %v; want nil, ErrOpen", name, got, err)
					continue
				}
				if !pass {
					// An invalid case with such a size (ZeroLengthIv,
					// InvalidNonceSize) must fail, and does.
					c.rejected++
					continue
				}
				c.na[fmt.Sprintf("%d-bit nonce / %d-bit tag not offered (Open returns ErrOpen)", g.IVSize, g.TagSize)]++
				continue
			}
			if !pass {
				if got != nil || err != ErrOpen {
					t.Errorf("%s: Open = %x, %v; want nil, ErrOpen", name, got, err)
					continue
				}
				c.rejected++
				continue
			}
			if err != nil || !bytes.Equal(got, tc.Msg) {
				t.Errorf("%s: Open = %x, %v; want %x", name, got, err, tc.Msg)
				continue
			}
			if s := a.Seal(nil, tc.IV, tc.Msg, tc.AAD); !bytes.Equal(s, sealed) {
				t.Errorf("%s: Seal = %x, want %x", name, s, sealed)
				continue
			}
			c.passed++
		}
	}
	c.check(t, f.NumberOfTests, minRun)
}

func TestWycheproofAES256GCM(t *testing.T) {
	// 256-bit key, 96-bit IV cases: 2 Ktv + 35 Pseudorandom + 2 SpecialCase
	// valid, 27 ModifiedTag invalid; plus 2 ZeroLengthIv invalid.
	testWycheproofAEAD(t, "aes_gcm_test.json", NewAES256GCM, 68)
}

func TestWycheproofChaCha20Poly1305(t *testing.T) {
	testWycheproofAEAD(t, "chacha20_poly1305_test.json", NewChaCha20Poly1305, 325)
}

func TestWycheproofHKDFSHA256(t *testing.T) {
	var f struct {
		NumberOfTests int `json:"numberOfTests"`
		TestGroups    []struct {
			Tests []struct {
				TcID    int      `json:"tcId"`
				Comment string   `json:"comment"`
				IKM     hexBytes `json:"ikm"`
				Salt    hexBytes `json:"salt"`
				Info    hexBytes `json:"info"`
				Size    int      `json:"size"`
				OKM     hexBytes `json:"okm"`
				Result  string   `json:"result"`
				Flags   []string `json:"flags"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	loadWycheproof(t, "hkdf_sha256_test.json", &f)
	c := &tally{name: "hkdf_sha256_test.json", na: map[string]int{}}
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			name := fmt.Sprintf("tcId %d (%s, %v, %q)", tc.TcID, tc.Result, tc.Flags, tc.Comment)
			pass, ok := expectPass(t, tc.TcID, tc.Result, tc.Flags)
			if !ok {
				continue
			}
			okm, err := HKDF(tc.IKM, tc.Salt, string(tc.Info), tc.Size)
			if !pass {
				if err == nil {
					t.Errorf("%s: HKDF returned %d bytes, want an error", name, len(okm))
					continue
				}
				c.rejected++
				continue
			}
			if err != nil || !bytes.Equal(okm, tc.OKM) {
				t.Errorf("%s: HKDF = %x, %v; want %x", name, okm, err, tc.OKM)
				continue
			}
			c.passed++
		}
	}
	c.check(t, f.NumberOfTests, 86)
}

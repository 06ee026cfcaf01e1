package mls

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// unhex decodes a hex string from a test vector.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// logPassCounts reports per-suite pass counts of a vector file and fails
// the test if no vector passed at all.
func logPassCounts(t *testing.T, file string, passed, total map[uint16]int) {
	t.Helper()
	suites := make([]int, 0, len(total))
	for cs := range total {
		suites = append(suites, int(cs))
	}
	slices.Sort(suites)
	sum, all := 0, 0
	for _, cs := range suites {
		t.Logf("%s: suite %d: %d/%d passed", file, cs, passed[uint16(cs)], total[uint16(cs)])
		sum += passed[uint16(cs)]
		all += total[uint16(cs)]
	}
	t.Logf("%s: %d/%d passed", file, sum, all)
	if sum == 0 {
		t.Fatalf("%s: no vector passed", file)
	}
}

// Test clients and groups.

// groupTestNow is the clock of the group tests.
var groupTestNow = time.Unix(1_800_000_000, 0)

// testSuites are the suites the group tests run for: the classical
// baseline and Moat's default.
var testSuites = []CipherSuite{CipherSuite(suite.X25519_AES128GCM_SHA256_Ed25519), CipherSuite(suite.XWING_CHACHA20POLY1305_SHA256_Ed25519)}

func testGroupConfig() Config {
	return Config{Credentials: acceptAllCredentials, Now: func() time.Time { return groupTestNow }}
}

// testClient is one client: a signature key, a basic credential and a
// KeyPackage, and once it is in a group its Group.
type testClient struct {
	name string
	cs   CipherSuite
	sig  SignaturePrivateKey
	kp   *KeyPackage
	kps  *KeyPackageSecrets
	g    *Group
	cfg  Config
}

func newTestClient(t testing.TB, cs CipherSuite, name string) *testClient {
	t.Helper()
	s, err := suite.Get(suite.ID(cs))
	if err != nil {
		t.Fatal(err)
	}
	priv, _, err := s.GenerateSignatureKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &testClient{name: name, cs: cs, sig: SignaturePrivateKey(priv), cfg: testGroupConfig()}
	c.newKeyPackage(t)
	return c
}

// newKeyPackage gives the client a fresh KeyPackage.
func (c *testClient) newKeyPackage(t testing.TB) {
	t.Helper()
	kp, kps, err := NewKeyPackage(KeyPackageOptions{
		CipherSuite:  c.cs,
		SignatureKey: c.sig,
		Credential:   Credential{Type: CredentialTypeBasic, Identity: []byte(c.name)},
		Lifetime:     Lifetime{NotBefore: uint64(groupTestNow.Unix()) - 3600, NotAfter: uint64(groupTestNow.Unix()) + 30*86400},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.kp, c.kps = kp, kps
}

// testGroup drives a group of test clients, delivering every message to
// every member in order, as Moat's delivery service does.
type testGroup struct {
	t       testing.TB
	cs      CipherSuite
	members []*testClient // current members, any order
	removed []*testClient // removed members (their Groups stay for checks)
}

// newTestGroup creates a group of n members: the first creates it and adds
// the others in one Commit.
func newTestGroup(t testing.TB, cs CipherSuite, n int) *testGroup {
	t.Helper()
	tg := &testGroup{t: t, cs: cs}
	creator := newTestClient(t, cs, "m0")
	g, err := NewGroup(creator.cfg, creator.kp, creator.kps, creator.sig, NewGroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	creator.g = g
	tg.members = []*testClient{creator}
	if n > 1 {
		var adds []*testClient
		for i := 1; i < n; i++ {
			adds = append(adds, newTestClient(t, cs, fmt.Sprintf("m%d", i)))
		}
		tg.add(creator, adds...)
	}
	return tg
}

// commit has c commit with opts and delivers the Commit to every member
// (c included, which merges it) and the Welcome to the new ones.
func (tg *testGroup) commit(c *testClient, opts CommitOptions, joiners ...*testClient) *CommitResult {
	tg.t.Helper()
	res, err := c.g.Commit(opts)
	if err != nil {
		tg.t.Fatalf("%s: commit: %v", c.name, err)
	}
	tg.deliverCommit(res, joiners...)
	return res
}

// deliverCommit delivers a Commit to every member and its Welcome to the
// joiners.
func (tg *testGroup) deliverCommit(res *CommitResult, joiners ...*testClient) {
	tg.t.Helper()
	var still []*testClient
	for _, m := range tg.members {
		p, err := m.g.Process(res.Message)
		if err != nil {
			tg.t.Fatalf("%s: processing commit: %v", m.name, err)
		}
		if p.Kind != ProcessedCommit {
			tg.t.Fatalf("%s: commit processed as %d", m.name, p.Kind)
		}
		if p.Commit.RemovedSelf {
			tg.removed = append(tg.removed, m)
			continue
		}
		still = append(still, m)
	}
	tg.members = still
	for _, j := range joiners {
		g, err := Join(j.cfg, res.Welcome, j.kp, j.kps, j.sig, JoinOptions{RatchetTree: tg.members[0].g.RatchetTree()})
		if err != nil {
			tg.t.Fatalf("%s: join: %v", j.name, err)
		}
		j.g = g
		tg.members = append(tg.members, j)
	}
	tg.checkAgree()
}

// add has c add the joiners in one Commit.
func (tg *testGroup) add(c *testClient, joiners ...*testClient) *CommitResult {
	tg.t.Helper()
	var kps []*KeyPackage
	for _, j := range joiners {
		kps = append(kps, j.kp)
	}
	return tg.commit(c, CommitOptions{Add: kps}, joiners...)
}

// deliver sends a proposal or application message from sender to every
// other member, which must accept it.
func (tg *testGroup) deliver(sender *testClient, msg []byte) {
	tg.t.Helper()
	for _, m := range tg.members {
		if m == sender {
			continue
		}
		if _, err := m.g.Process(msg); err != nil {
			tg.t.Fatalf("%s: processing message from %s: %v", m.name, sender.name, err)
		}
	}
}

// checkAgree checks every member is in the same epoch with the same
// epoch authenticator, GroupContext and tree.
func (tg *testGroup) checkAgree() {
	tg.t.Helper()
	ref := tg.members[0].g
	rt, _ := ref.RatchetTree().Encode()
	for _, m := range tg.members[1:] {
		if m.g.Epoch() != ref.Epoch() || !bytes.Equal(m.g.EpochAuthenticator(), ref.EpochAuthenticator()) {
			tg.t.Fatalf("%s disagrees with %s: epoch %d vs %d", m.name, tg.members[0].name, m.g.Epoch(), ref.Epoch())
		}
		if mt, _ := m.g.RatchetTree().Encode(); !bytes.Equal(mt, rt) {
			tg.t.Fatalf("%s has another tree than %s", m.name, tg.members[0].name)
		}
	}
}

// member returns the member at leaf i.
func (tg *testGroup) member(leaf uint32) *testClient {
	for _, m := range tg.members {
		if m.g.LeafIndex() == leaf {
			return m
		}
	}
	tg.t.Fatalf("no member at leaf %d", leaf)
	return nil
}

// State fingerprints: "a rejected input leaves all state byte-identical".

// stateFingerprint hashes everything reachable from g, secrets included,
// by reflection: every field of every struct (unexported too), slice and
// map contents (maps in key order), following pointers. Tree hash caches
// are brought up to date first so that a hash marked stale by a rolled-back
// change and recomputed to the same value counts as unchanged; scratch
// buffers and test counters are skipped.
func stateFingerprint(g *Group) [32]byte {
	if g.st.tree != nil {
		g.st.tree.treeHash()
	}
	h := sha256.New()
	w := &fingerprinter{seen: map[uintptr]bool{}}
	w.walk(reflect.ValueOf(g))
	h.Write(w.buf.Bytes())
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

type fingerprinter struct {
	buf  bytes.Buffer
	seen map[uintptr]bool
}

// skippedFields are scratch or instrumentation, not state.
var skippedFields = map[string]bool{"buf": true, "derivations": true, "stale": true, "staleCount": true}

func (w *fingerprinter) u64(v uint64) { binary.Write(&w.buf, binary.BigEndian, v) }

var suiteType = reflect.TypeOf((*suite.Suite)(nil))

func (w *fingerprinter) walk(v reflect.Value) {
	if v.Type() == suiteType {
		// Immutable and shared; its primitives may cache internally.
		w.u64(uint64(v.Pointer()))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			w.u64(0)
			return
		}
		w.u64(1)
		if w.seen[v.Pointer()] {
			return
		}
		w.seen[v.Pointer()] = true
		w.walk(v.Elem())
	case reflect.Interface:
		if v.IsNil() {
			w.u64(0)
			return
		}
		w.buf.WriteString(v.Elem().Type().String())
		w.walk(v.Elem())
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if skippedFields[v.Type().Field(i).Name] {
				continue
			}
			w.walk(v.Field(i))
		}
	case reflect.Slice, reflect.Array:
		w.u64(uint64(v.Len()))
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			w.buf.Write(v.Bytes())
			return
		}
		for i := 0; i < v.Len(); i++ {
			w.walk(v.Index(i))
		}
	case reflect.Map:
		w.u64(uint64(v.Len()))
		keys := v.MapKeys()
		kf := make([]string, len(keys))
		for i, k := range keys {
			sub := &fingerprinter{seen: map[uintptr]bool{}}
			sub.walk(k)
			kf[i] = sub.buf.String()
		}
		idx := make([]int, len(keys))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(kf[a], kf[b]) })
		for _, i := range idx {
			w.buf.WriteString(kf[i])
			w.walk(v.MapIndex(keys[i]))
		}
	case reflect.String:
		w.u64(uint64(v.Len()))
		w.buf.WriteString(v.String())
	case reflect.Bool:
		if v.Bool() {
			w.u64(1)
		} else {
			w.u64(0)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		w.u64(uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		w.u64(v.Uint())
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		// Configuration hooks and the like: identity only.
		w.u64(uint64(v.Pointer()))
	default:
		panic("fingerprint: unhandled kind " + v.Kind().String())
	}
}

// wantUnchanged runs f, which must fail, and checks g's state is
// byte-identical afterwards. It returns f's error.
func wantUnchanged(t *testing.T, g *Group, what string, f func() error) error {
	t.Helper()
	before := stateFingerprint(g)
	err := f()
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if after := stateFingerprint(g); after != before {
		t.Fatalf("%s: rejected (%v) but the state changed", what, err)
	}
	return err
}

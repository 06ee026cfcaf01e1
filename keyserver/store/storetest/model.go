package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

// A Model drives a DirectoryStore the way the directory does — map
// update, log append through a TreeStore, value records, tenant states,
// head — and remembers what every read must return. Backends use it in
// their own tests (for example around a simulated crash).
type Model struct {
	S    store.DirectoryStore
	Map  *vmap.Map
	TS   *store.TreeStore
	Tree *tlog.Tree

	rng    *rand.ChaCha8
	head   *store.Head
	values map[vmap.Label][][]byte
	labels []vmap.Label
	// failed is set once a commit failed: a store may then have lost
	// summaries (LatestSummary returns nil for them).
	failed  bool
	tenants map[[16]byte]map[store.TenantKey][]byte
	roots   []vmap.Hash
	history []map[vmap.Label]vmap.Commitment // map contents per epoch
	changes []vmap.Change                    // of the last built commit
	trans   []store.Transition               // the transitions, by epoch
}

// NewModel returns a Model of the empty store s.
func NewModel(t testing.TB, s store.DirectoryStore, seed uint64) *Model {
	t.Helper()
	m := &Model{
		S:       s,
		Map:     vmap.New(s, &vmap.Options{Parallelism: 2}),
		TS:      store.NewTreeStore(s),
		rng:     rng(seed),
		values:  map[vmap.Label][][]byte{},
		tenants: map[[16]byte]map[store.TenantKey][]byte{},
	}
	tr, err := tlog.NewTree(context.Background(), m.TS, 0)
	if err != nil {
		t.Fatal(err)
	}
	m.Tree = tr
	return m
}

func rng(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	copy(s[8:], "moat storetest conformance seed")
	return rand.NewChaCha8(s)
}

// Spec says what the next epoch writes.
type Spec struct {
	NewLabels  int // labels written for the first time
	Updates    int // existing labels written again (at most all of them)
	Versions   int // versions per label written (default 1)
	RecordSize int // bytes per record (default 64)
	Tenants    int // tenants written (new or existing: tenant i is ID {i})
	TenantSize int // bytes per tenant record written (default 100)
	// TenantRecords is the number of records written per tenant (default
	// 3): about half rewrite existing records, the rest are new.
	TenantRecords int
	// TenantDeletes is the number of existing records deleted per tenant
	// (as many as exist, at most), besides TenantRecords.
	TenantDeletes int
	SkipLogLeaf   bool
	Transition    bool // the epoch is a transition (EpochCommit.Transition)
}

// Epoch returns the next epoch's number.
func (m *Model) Epoch() uint64 {
	if m.head == nil {
		return 0
	}
	return m.head.Epoch + 1
}

// Head returns the model's head (nil when empty).
func (m *Model) Head() *store.Head { return m.head }

// Values returns the records of label written so far, and whether it has
// any.
func (m *Model) Values(label vmap.Label) ([][]byte, bool) {
	vs, ok := m.values[label]
	return vs, ok
}

// Labels returns the labels written so far.
func (m *Model) Labels() []vmap.Label { return m.labels }

// Build returns the next epoch's commit, with its log append already
// written into it through m.TS; the Tree has advanced. Commit or Abort it.
func (m *Model) Build(t testing.TB, sp Spec) *store.EpochCommit {
	t.Helper()
	if sp.Versions == 0 {
		sp.Versions = 1
	}
	if sp.RecordSize == 0 {
		sp.RecordSize = 64
	}
	if sp.TenantSize == 0 {
		sp.TenantSize = 100
	}
	sp.RecordSize, sp.TenantSize = max(sp.RecordSize, 8), max(sp.TenantSize, 8) // room for the epoch
	e := m.Epoch()
	c := &store.EpochCommit{Epoch: e, Transition: sp.Transition}
	var labels []vmap.Label
	for range sp.NewLabels {
		var l vmap.Label
		_, _ = m.rng.Read(l[:])
		labels = append(labels, l)
	}
	perm := m.rng.Uint64()
	for i := range min(sp.Updates, len(m.labels)) {
		labels = append(labels, m.labels[(uint64(i)*7919+perm)%uint64(len(m.labels))])
	}
	slices.SortFunc(labels, func(a, b vmap.Label) int { return bytes.Compare(a[:], b[:]) })
	labels = slices.Compact(labels)
	changes := make([]vmap.Change, 0, len(labels))
	for _, l := range labels {
		latest := uint32(len(m.values[l]))
		var last []byte
		for v := range sp.Versions {
			rec := make([]byte, sp.RecordSize)
			_, _ = m.rng.Read(rec)
			binary.BigEndian.PutUint64(rec, e) // records name their epoch
			c.Values = append(c.Values, store.ValueWrite{Label: l, Version: latest + 1 + uint32(v), Record: rec, Summary: summaryOf(rec)})
			last = rec
		}
		changes = append(changes, vmap.Change{Label: l, Commitment: sha256.Sum256(last)})
	}
	// Shuffle value writes: order within a commit is not significant.
	m.rng2().Shuffle(len(c.Values), func(i, j int) { c.Values[i], c.Values[j] = c.Values[j], c.Values[i] })
	if sp.TenantRecords == 0 {
		sp.TenantRecords = 3
	}
	for i := range sp.Tenants {
		var id [16]byte
		id[0] = byte(i + 1)
		tw := store.TenantWrite{ID: id}
		existing := slices.SortedFunc(maps.Keys(m.tenants[id]), func(a, b store.TenantKey) int { return bytes.Compare(a[:], b[:]) })
		m.rng2().Shuffle(len(existing), func(i, j int) { existing[i], existing[j] = existing[j], existing[i] })
		for j := range sp.TenantRecords {
			var k store.TenantKey
			if j%2 == 1 && len(existing) > 0 {
				k, existing = existing[0], existing[1:]
			} else {
				_, _ = m.rng.Read(k[:])
				k[0] %= 4 // a few kinds, as the org package uses
			}
			v := make([]byte, sp.TenantSize)
			_, _ = m.rng.Read(v)
			binary.BigEndian.PutUint64(v, e)
			tw.Records = append(tw.Records, store.TenantRecord{Key: k, Value: v})
		}
		for range min(sp.TenantDeletes, len(existing)) {
			tw.Records = append(tw.Records, store.TenantRecord{Key: existing[0]})
			existing = existing[1:]
		}
		c.Tenants = append(c.Tenants, tw)
	}
	m.changes = changes
	b, err := m.Map.Update(e, changes)
	if err != nil {
		t.Fatalf("vmap update of epoch %d: %v", e, err)
	}
	c.Map = b
	m.TS.Begin(c)
	if !sp.SkipLogLeaf {
		leaf := fmt.Appendf(nil, "epoch %d map root %x", e, b.Root[:])
		if _, err := m.Tree.Append(context.Background(), leaf); err != nil {
			t.Fatalf("log append of epoch %d: %v", e, err)
		}
	}
	c.Head = store.Head{Epoch: e, LogSize: m.Tree.Size(), Checkpoint: fmt.Appendf(nil, "checkpoint %d %d %x\n", e, m.Tree.Size(), b.Root[:])}
	return c
}

func (m *Model) rng2() *rand.Rand { return rand.New(rand.NewPCG(m.rng.Uint64(), 1)) }

// Commit commits c, which Build returned, through m.TS and records it on
// success. On failure the model is unchanged and its Tree rebuilt from
// the store.
func (m *Model) Commit(t testing.TB, ctx context.Context, c *store.EpochCommit) error {
	t.Helper()
	err := m.TS.Commit(ctx)
	if err != nil {
		m.Reset(t)
		return err
	}
	m.record(c)
	return nil
}

// MustCommit builds and commits an epoch.
func (m *Model) MustCommit(t testing.TB, sp Spec) *store.EpochCommit {
	t.Helper()
	c := m.Build(t, sp)
	if err := m.Commit(t, context.Background(), c); err != nil {
		t.Fatalf("committing epoch %d: %v", c.Epoch, err)
	}
	return c
}

// Abort drops a built commit.
func (m *Model) Abort(t testing.TB) {
	t.Helper()
	m.TS.Abort()
	m.Reset(t)
}

// MustUpdateHeadCheckpoint replaces the head's checkpoint with a new one of
// n bytes and returns the slice it passed to the store.
func (m *Model) MustUpdateHeadCheckpoint(t testing.TB, n int) []byte {
	t.Helper()
	cp := make([]byte, n)
	for i := range cp {
		cp[i] = byte(m.rng.Uint64())
	}
	if err := m.S.UpdateHeadCheckpoint(context.Background(), m.head.Epoch, cp); err != nil {
		t.Fatalf("UpdateHeadCheckpoint: %v", err)
	}
	m.head.Checkpoint = bytes.Clone(cp)
	if n := len(m.trans); n > 0 && m.trans[n-1].Epoch == m.head.Epoch {
		m.trans[n-1].Checkpoint = bytes.Clone(cp)
	}
	return cp
}

// Reset rebuilds the Tree from the model's head, after a failed commit or
// after the store was reopened into m.S.
func (m *Model) Reset(t testing.TB) {
	t.Helper()
	m.failed = true
	m.Map = vmap.New(m.S, &vmap.Options{Parallelism: 2})
	m.TS = store.NewTreeStore(m.S)
	var size uint64
	if m.head != nil {
		size = m.head.LogSize
	}
	tr, err := tlog.NewTree(context.Background(), m.TS, size)
	if err != nil {
		t.Fatalf("rebuilding the log tree: %v", err)
	}
	m.Tree = tr
}

func (m *Model) record(c *store.EpochCommit) {
	h := c.Head.Clone()
	m.head = &h
	if c.Transition {
		m.trans = append(m.trans, store.Transition{Epoch: c.Epoch, Checkpoint: bytes.Clone(h.Checkpoint)})
	}
	snap := map[vmap.Label]vmap.Commitment{}
	if n := len(m.history); n > 0 {
		for k, v := range m.history[n-1] {
			snap[k] = v
		}
	}
	vs := slices.Clone(c.Values)
	slices.SortFunc(vs, func(a, b store.ValueWrite) int {
		if x := bytes.Compare(a.Label[:], b.Label[:]); x != 0 {
			return x
		}
		return int(a.Version) - int(b.Version)
	})
	for _, w := range vs {
		if _, ok := m.values[w.Label]; !ok {
			m.labels = append(m.labels, w.Label)
		}
		m.values[w.Label] = append(m.values[w.Label], bytes.Clone(w.Record))
	}
	for _, ch := range m.changes {
		snap[ch.Label] = ch.Commitment
	}
	for _, tw := range c.Tenants {
		t := m.tenants[tw.ID]
		if t == nil {
			t = map[store.TenantKey][]byte{}
			m.tenants[tw.ID] = t
		}
		for _, r := range tw.Records {
			if len(r.Value) == 0 {
				delete(t, r.Key)
			} else {
				t[r.Key] = bytes.Clone(r.Value)
			}
		}
	}
	m.roots = append(m.roots, c.Map.Root)
	m.history = append(m.history, snap)
}

// Check verifies every read against the model: head, value records,
// latest versions, tenant states, log roots, and map lookups at the latest
// epoch (and, with pastEpochs, at every epoch).
func (m *Model) Check(t testing.TB, pastEpochs bool) {
	t.Helper()
	ctx := context.Background()
	s := m.S
	h, err := s.Head(ctx)
	if m.head == nil {
		if !errors.Is(err, store.ErrEmpty) {
			t.Fatalf("Head of an empty store = %v, %v; want ErrEmpty", h, err)
		}
		return
	}
	if err != nil || h.Epoch != m.head.Epoch || h.LogSize != m.head.LogSize || !bytes.Equal(h.Checkpoint, m.head.Checkpoint) {
		t.Fatalf("Head = %+v, %v; want %+v", h, err, *m.head)
	}
	for _, l := range m.labels {
		want := m.values[l]
		v, err := s.LatestVersion(ctx, l)
		if err != nil || v != uint32(len(want)) {
			t.Fatalf("LatestVersion(%x) = %d, %v; want %d", l[:4], v, err, len(want))
		}
		sv, sum, err := s.LatestSummary(ctx, l)
		if err != nil || sv != v || (sum == nil && !m.failed) || (sum != nil && !bytes.Equal(sum, summaryOf(want[len(want)-1]))) {
			t.Fatalf("LatestSummary(%x) = %d, %x, %v; want %d, %x", l[:4], sv, sum, err, v, summaryOf(want[len(want)-1]))
		}
		lv, lrec, err := s.LatestValue(ctx, l)
		if err != nil || lv != v || !bytes.Equal(lrec, want[len(want)-1]) {
			t.Fatalf("LatestValue(%x) = %d, %d bytes, %v; want %d, %d bytes", l[:4], lv, len(lrec), err, v, len(want[len(want)-1]))
		}
		got, err := s.Values(ctx, l, 1, v)
		if err != nil {
			t.Fatalf("Values(%x, 1, %d): %v", l[:4], v, err)
		}
		if len(got) != len(want) {
			t.Fatalf("Values(%x, 1, %d) returned %d records", l[:4], v, len(got))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("Values(%x): version %d differs", l[:4], i+1)
			}
		}
		if _, err := s.Values(ctx, l, v+1, v+1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Values(%x, %d, %d) past the latest = %v, want ErrNotFound", l[:4], v+1, v+1, err)
		}
	}
	for id, want := range m.tenants {
		if err := CheckTenant(ctx, s, id, want); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ReadTenant(ctx, s, [16]byte{0xff, 0xee}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TenantRecords of an unknown tenant = %v, want ErrNotFound", err)
	}
	trs, err := s.Transitions(ctx)
	if err != nil || len(trs) != len(m.trans) {
		t.Fatalf("Transitions = %d, %v; want %d", len(trs), err, len(m.trans))
	}
	for i, tr := range trs {
		if tr.Epoch != m.trans[i].Epoch || !bytes.Equal(tr.Checkpoint, m.trans[i].Checkpoint) {
			t.Fatalf("transition %d: epoch %d with %d bytes, want epoch %d with %d bytes", i, tr.Epoch, len(tr.Checkpoint), m.trans[i].Epoch, len(m.trans[i].Checkpoint))
		}
	}
	// Log: a fresh tree over the store alone has the model's root.
	tr, err := tlog.NewTree(ctx, store.NewTreeStore(s), m.head.LogSize)
	if err != nil {
		t.Fatalf("tlog.NewTree at the head's size %d: %v", m.head.LogSize, err)
	}
	for _, size := range []uint64{m.head.LogSize, m.head.LogSize / 2} {
		got, err := tr.Root(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		want, err := m.Tree.Root(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("log root at size %d differs", size)
		}
	}
	if _, err := s.ReadNodes(ctx, []tlog.NodeID{{Level: 0, Index: m.head.LogSize}}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ReadNodes past the head's log = %v, want ErrNotFound", err)
	}
	// Map.
	mp := vmap.New(s, nil)
	first := len(m.history) - 1
	if pastEpochs {
		first = 0
	}
	var absent vmap.Label
	absent[0] = 0xa5
	for e := first; e < len(m.history); e++ {
		root, err := mp.Root(uint64(e))
		if err != nil || root != m.roots[e] {
			t.Fatalf("map root of epoch %d = %x, %v; want %x", e, root[:4], err, m.roots[e][:4])
		}
		for i, l := range append(m.labels[:len(m.labels):len(m.labels)], absent) {
			if pastEpochs && i%7 != 0 && l != absent {
				continue
			}
			want, ok := m.history[e][l]
			p, err := mp.Prove(uint64(e), l)
			if err != nil {
				t.Fatalf("Prove(%d, %x): %v", e, l[:4], err)
			}
			res, err := vmap.Verify(m.roots[e], l, p)
			if err != nil {
				t.Fatalf("proof at epoch %d for %x: %v", e, l[:4], err)
			}
			if res.Present != ok || ok && res.Commitment != want {
				t.Fatalf("epoch %d label %x: present=%v, want %v", e, l[:4], res.Present, ok)
			}
		}
	}
	if _, err := s.GetNodes([]vmap.NodeKey{vmap.RootKey(m.head.Epoch + 1)}); !errors.Is(err, vmap.ErrNodeNotFound) {
		t.Fatalf("root of the epoch after the head = %v, want ErrNodeNotFound", err)
	}
}

// ReadTenant returns a tenant's records (TenantRecords), checking that
// they come in increasing key order.
func ReadTenant(ctx context.Context, s store.DirectoryStore, id [16]byte) (map[store.TenantKey][]byte, error) {
	out := map[store.TenantKey][]byte{}
	var prev *store.TenantKey
	err := s.TenantRecords(ctx, id, func(k store.TenantKey, v []byte) error {
		if prev != nil && bytes.Compare(prev[:], k[:]) >= 0 {
			return fmt.Errorf("TenantRecords(%x): key %x after %x", id[:1], k[:4], prev[:4])
		}
		if len(v) == 0 {
			return fmt.Errorf("TenantRecords(%x): empty record %x", id[:1], k[:4])
		}
		kk := k
		prev = &kk
		out[k] = bytes.Clone(v)
		return nil
	})
	return out, err
}

// CheckTenant checks that a tenant's records are want.
func CheckTenant(ctx context.Context, s store.DirectoryStore, id [16]byte, want map[store.TenantKey][]byte) error {
	got, err := ReadTenant(ctx, s, id)
	if len(want) == 0 {
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("TenantRecords(%x) of a tenant without records = %d records, %v; want ErrNotFound", id[:1], len(got), err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("TenantRecords(%x): %w", id[:1], err)
	}
	if len(got) != len(want) {
		return fmt.Errorf("TenantRecords(%x) = %d records, want %d", id[:1], len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			return fmt.Errorf("TenantRecords(%x): record %x = %d bytes, want %d", id[:1], k[:4], len(got[k]), len(v))
		}
	}
	return nil
}

// Tenant returns the model's records of a tenant.
func (m *Model) Tenant(id [16]byte) map[store.TenantKey][]byte { return maps.Clone(m.tenants[id]) }

// summaryOf is the summary the model writes with a record.
func summaryOf(rec []byte) []byte {
	h := sha256.Sum256(rec)
	return h[:20]
}

package service

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/memstore"
)

// failNext fails the next CommitEpoch when fail is set.
type failNext struct {
	store.DirectoryStore
	fail bool
}

var errFailNext = errors.New("injected commit failure")

func (s *failNext) CommitEpoch(ctx context.Context, c *store.EpochCommit) error {
	if s.fail {
		s.fail = false
		return errFailNext
	}
	return s.DirectoryStore.CommitEpoch(ctx, c)
}

// TestStateRecordsPersisted: the tenant state the store holds after
// epochs that each write only the records they changed, including one
// whose commit failed, is the live tenant's state byte for byte, and an
// epoch without admin changes writes no record.
func TestStateRecordsPersisted(t *testing.T) {
	ctx := context.Background()
	rnd := mrand.NewChaCha8([32]byte{7})
	id := org.TenantID{0xbe, 0x07}
	tk, cp, _ := benchTenantParams(rnd, id)
	fs := &failNext{DirectoryStore: memstore.New()}
	now := benchT0
	svc, err := New(ctx, Options{
		Tenants: []TenantConfig{{ID: id, Store: fs, Keys: tk, Create: cp}},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	ten := svc.Tenant(id)
	admin := org.AdminID{0xad, 1}
	check := func(step string) {
		t.Helper()
		stored, err := ten.loadOrg(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		a, err1 := stored.MarshalBinary()
		b, err2 := ten.org.MarshalBinary()
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s: the stored state differs from the live one (%v, %v)", step, err1, err2)
		}
	}
	records := func() int {
		n := 0
		_ = fs.TenantRecords(ctx, [16]byte(id), func(store.TenantKey, []byte) error { n++; return nil })
		return n
	}
	publish := func() error {
		ten.mu.Lock()
		defer ten.mu.Unlock()
		now = now.Add(30 * time.Second)
		_, err := ten.publish(ctx, now)
		return err
	}
	check("created")
	for e := range 4 {
		ten.mu.Lock()
		if _, err := ten.org.AddUser(admin, org.UserID{0x55, byte(e)}, "User", org.DepartmentID{}, now); err != nil {
			t.Fatal(err)
		}
		if err := ten.org.AddDepartment(admin, org.DepartmentID{0xde, byte(e)}, org.DepartmentID{}, "Dept"); err != nil {
			t.Fatal(err)
		}
		ten.dirty = true
		ten.mu.Unlock()
		if err := publish(); err != nil {
			t.Fatal(err)
		}
		check("epoch")
	}
	n := records()
	// A failed commit leaves the pending changes; the next epoch writes
	// them.
	ten.mu.Lock()
	if _, err := ten.org.AddUser(admin, org.UserID{0x55, 9}, "Late", org.DepartmentID{0xde, 1}, now); err != nil {
		t.Fatal(err)
	}
	ten.dirty = true
	ten.mu.Unlock()
	before, _ := ten.org.MarshalBinary()
	fs.fail = true
	if err := publish(); !errors.Is(err, errFailNext) {
		t.Fatalf("publish with a failing store: %v", err)
	}
	if after, _ := ten.org.MarshalBinary(); !bytes.Equal(before, after) {
		t.Fatal("a failed epoch changed the tenant's state")
	}
	if err := publish(); err != nil {
		t.Fatal(err)
	}
	check("after a failed commit")
	if records() != n+1 {
		t.Fatalf("%d records, want %d", records(), n+1)
	}
	// An epoch without admin changes writes nothing of the state.
	c := 0
	fs.DirectoryStore = &countTenants{DirectoryStore: fs.DirectoryStore, n: &c}
	if err := publish(); err != nil {
		t.Fatal(err)
	}
	if c != 0 {
		t.Fatalf("an epoch without admin changes wrote %d tenant records", c)
	}
}

type countTenants struct {
	store.DirectoryStore
	n *int
}

func (s *countTenants) CommitEpoch(ctx context.Context, c *store.EpochCommit) error {
	for _, tw := range c.Tenants {
		*s.n += len(tw.Records)
	}
	return s.DirectoryStore.CommitEpoch(ctx, c)
}

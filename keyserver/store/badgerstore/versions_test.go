package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/storetest"
	"github.com/moat-im/moat/keyserver/vmap"
)

// cancelAfter is a context whose Err is nil for its first n calls and
// context.Canceled after: a commit that passes beginWrite and fails in
// the write, without breaking the store.
type cancelAfter struct {
	context.Context
	n atomic.Int32
}

func (c *cancelAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// TestVersionChecksAfterFailedWrite: a commit that fails in its write
// (after the version checks passed) does not count as committed in
// Store.labels: the version after the one it would have written is
// still a gap.
func TestVersionChecksAfterFailedWrite(t *testing.T) {
	s := openTest(t, t.TempDir(), 0)
	defer s.Close()
	m := storetest.NewModel(t, s, 21)
	m.MustCommit(t, storetest.Spec{NewLabels: 2})
	m.MustCommit(t, storetest.Spec{Updates: 2}) // label at version 2, in Store.labels
	l := m.Labels()[0]
	write := func(ctx context.Context, version uint32) error {
		c := m.Build(t, storetest.Spec{})
		rec := []byte("r")
		sum := sha256.Sum256(rec)
		c.Values = append(c.Values, store.ValueWrite{Label: l, Version: version, Record: rec, Summary: sum[:20]})
		return m.Commit(t, ctx, c)
	}
	ctx := &cancelAfter{Context: context.Background()}
	ctx.n.Store(1) // beginWrite's check passes, the writer's fails
	if err := write(ctx, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("commit canceled in its write = %v, want context.Canceled", err)
	}
	if err := write(context.Background(), 4); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("version 4 after a failed write of version 3: %v, want ErrConflict", err)
	}
	m.Check(t, false)
}

// TestVersionChecksMultiVersionRun: Store.labels holds the last version of
// a run of several versions: rewriting any of them is ErrConflict.
func TestVersionChecksMultiVersionRun(t *testing.T) {
	s := openTest(t, t.TempDir(), 0)
	defer s.Close()
	m := storetest.NewModel(t, s, 22)
	m.MustCommit(t, storetest.Spec{NewLabels: 1, Versions: 3}) // versions 1..3 in one run
	l := m.Labels()[0]
	for _, v := range []uint32{2, 3, 5} {
		c := m.Build(t, storetest.Spec{})
		rec := []byte("r")
		sum := sha256.Sum256(rec)
		c.Values = append(c.Values, store.ValueWrite{Label: l, Version: v, Record: rec, Summary: sum[:20]})
		if err := m.Commit(t, context.Background(), c); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("version %d after a run 1..3: CommitEpoch = %v, want ErrConflict", v, err)
		}
	}
	m.Check(t, true)
}

// TestLatestSummaryConcurrentCommits: readers of LatestSummary during
// commits and their cleanups get a version between the versions at the
// heads before and after the call, with its own summary when they get one.
func TestLatestSummaryConcurrentCommits(t *testing.T) {
	s := openTest(t, t.TempDir(), 0)
	defer s.Close()
	ctx := context.Background()
	m := storetest.NewModel(t, s, 24)
	clock := vmap.Label{0xc1, 0x0c}
	sumOf := func(v uint32) []byte {
		h := sha256.Sum256(fmt.Appendf(nil, "%d", v))
		return h[:20]
	}
	commit := func() {
		c := m.Build(t, storetest.Spec{NewLabels: 5})
		v := uint32(c.Epoch + 1)
		rec := fmt.Appendf(nil, "%d", v)
		c.Values = append(c.Values, store.ValueWrite{Label: clock, Version: v, Record: rec, Summary: sumOf(v)})
		if err := m.Commit(t, ctx, c); err != nil {
			t.Error(err)
		}
	}
	commit()
	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				h1, _ := s.Head(ctx)
				v, sum, err := s.LatestSummary(ctx, clock)
				h2, _ := s.Head(ctx)
				if err != nil || uint64(v) < h1.Epoch+1 || uint64(v) > h2.Epoch+1 || (sum != nil && !bytes.Equal(sum, sumOf(v))) {
					errs <- fmt.Errorf("LatestSummary = %d, %x, %v between heads %d and %d", v, sum, err, h1.Epoch, h2.Epoch)
					return
				}
			}
		})
	}
	for range 60 {
		commit()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

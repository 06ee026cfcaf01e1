package badgermailbox

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestBaselineWriter checks that what concurrent Puts wrote is in the
// database once they return, in no more batches than Puts.
func TestBaselineWriter(t *testing.T) {
	db, err := badger.Open(BaselineOptions(t.TempDir(), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w := NewBaselineWriter(db)
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := w.Put(fmt.Appendf(nil, "k%d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	w.Close()
	if b := w.Batches(); b < 1 || b > n {
		t.Errorf("%d batches for %d puts", b, n)
	}
	err = db.View(func(txn *badger.Txn) error {
		for i := range n {
			it, err := txn.Get(fmt.Appendf(nil, "k%d", i))
			if err != nil {
				return err
			}
			v, err := it.ValueCopy(nil)
			if err != nil {
				return err
			}
			if !bytes.Equal(v, fmt.Appendf(nil, "v%d", i)) {
				t.Errorf("k%d = %q", i, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

package badgerstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/storetest"
	"github.com/moat-im/moat/keyserver/vmap"
)

// BenchmarkLatest compares the ways the directory finds a label's latest
// version, epoch and commitment when it has not cached them (every label
// of the first epochs after a restart): LatestSummary (one hint key,
// checked with two version keys), LatestValue (an iterator search over
// the version keys, then the record), and LatestVersion's iterator search
// followed by a Values read, which the directory made before. 2,000 labels with 8 versions of 3.6 KB each;
// one lookup per op. For instruction counts:
//
//	bash .ci/instructions ./keyserver/store/badgerstore 2000 'BenchmarkLatest/summary' …
func BenchmarkLatest(b *testing.B) {
	ctx := context.Background()
	s := openTest(b, b.TempDir(), 0)
	defer s.Close()
	m := storetest.NewModel(b, s, 11)
	m.MustCommit(b, storetest.Spec{NewLabels: 2000, RecordSize: 3600})
	for range 7 {
		m.MustCommit(b, storetest.Spec{Updates: 2000, RecordSize: 3600})
	}
	labels := m.Labels()
	head := m.Head().Epoch
	for _, mode := range []string{"summary", "value", "iterator"} {
		b.Run(mode, func(b *testing.B) {
			for i := range b.N {
				l := labels[(i*7919)%len(labels)]
				var v uint32
				var err error
				switch mode {
				case "summary":
					v, _, err = s.LatestSummary(ctx, l)
				case "value":
					v, _, err = s.LatestValue(ctx, l)
				case "iterator":
					txn := s.db.NewTransaction(false)
					v, err = iteratorLatest(txn, l, head)
					txn.Discard()
					if err == nil {
						_, err = s.Values(ctx, l, v, v)
					}
				}
				if err != nil || v != 8 {
					b.Fatalf("%s: version %d, %v", mode, v, err)
				}
			}
		})
	}
}

// iteratorLatest is the latest-version search of schema 2: a reverse
// iterator over the label's version keys, then the versions' epochs.
func iteratorLatest(txn *badger.Txn, label vmap.Label, epoch uint64) (uint32, error) {
	prefix := valuePrefix(label)
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix})
	defer it.Close()
	it.Seek(append(prefix, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
	if !it.Valid() {
		return 0, nil
	}
	k := it.Item().Key()
	if len(k) != valueBaseSize+fragNumSize {
		return 0, fmt.Errorf("%w: value key %x", store.ErrCorrupt, k)
	}
	top := binary.BigEndian.Uint32(k[1+vmap.LabelSize:])
	base := make([]byte, 0, valueBaseSize)
	for v := top; v > 0; v-- {
		base = appendValueBase(base[:0], label, v)
		e, err := blobEpoch(txn, base)
		if err != nil {
			return 0, err
		}
		if e <= epoch {
			return v, nil
		}
	}
	return 0, nil
}

package relay

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/server/store/mailbox"
)

// TestHeadBatcherGroups: heads requested while a batch is being signed
// are signed together in the next batch, each waiter gets its own head,
// and a signing error reaches every head of its batch only.
func TestHeadBatcherGroups(t *testing.T) {
	release := make(chan struct{})
	var calls [][]mailbox.HeadLeaf
	var mu sync.Mutex
	fail := errors.New("signer down")
	b := &headBatcher{sign: func(ls []mailbox.HeadLeaf) ([]*mailbox.BatchedHead, error) {
		mu.Lock()
		calls = append(calls, ls)
		first := len(calls) == 1
		mu.Unlock()
		if first {
			<-release
			return nil, fail
		}
		return mailbox.SignHeadBatch(fixedSigner{}, ls, time.UnixMilli(1_800_000_000_000))
	}}
	first := make(chan error)
	go func() {
		_, err := b.signHead(mailbox.ID{0}, 1)
		first <- err
	}()
	// Wait until the first batch is being signed, then queue ten more.
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n == 1 {
			break
		}
		runtime.Gosched()
	}
	const n = 10
	var wg sync.WaitGroup
	res := make([]*mailbox.BatchedHead, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = b.signHead(mailbox.ID{byte(i + 1)}, uint64(i+1))
		}()
	}
	for {
		b.mu.Lock()
		q := len(b.queue)
		b.mu.Unlock()
		if q == n { // the leader took its batch before signing
			break
		}
		runtime.Gosched()
	}
	close(release)
	if err := <-first; !errors.Is(err, fail) {
		t.Fatalf("first batch: %v", err)
	}
	wg.Wait()
	if len(calls) != 2 || len(calls[1]) != n {
		t.Fatalf("%d signatures, second of %d heads; want 2 and %d", len(calls), len(calls[len(calls)-1]), n)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if res[i].Mailbox != (mailbox.ID{byte(i + 1)}) || res[i].Head != uint64(i+1) || res[i].Size != n {
			t.Fatalf("head %d: %+v", i, res[i])
		}
	}
	if b.busy || len(b.queue) != 0 {
		t.Fatal("batcher not idle")
	}
}

// TestHeadBatcherMultiLeaf: requests of several leaves (a send-batch
// request's heads) share batches with single ones, and each gets the
// heads of its own leaves, in order.
func TestHeadBatcherMultiLeaf(t *testing.T) {
	var mu sync.Mutex
	sigs := 0
	b := &headBatcher{sign: func(ls []mailbox.HeadLeaf) ([]*mailbox.BatchedHead, error) {
		mu.Lock()
		sigs++
		mu.Unlock()
		return mailbox.SignHeadBatch(fixedSigner{}, ls, time.UnixMilli(1_800_000_000_000))
	}}
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			leaves := make([]mailbox.HeadLeaf, 1+i%5)
			for j := range leaves {
				leaves[j] = mailbox.HeadLeaf{Mailbox: mailbox.ID{byte(i), byte(j)}, Head: uint64(100*i + j)}
			}
			hs, err := b.signHeads(leaves)
			if err == nil && len(hs) != len(leaves) {
				err = errors.New("wrong number of heads")
			}
			for j := range hs {
				if err == nil && (hs[j].Mailbox != leaves[j].Mailbox || hs[j].Head != leaves[j].Head) {
					err = errors.New("another request's head")
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if sigs < 1 || sigs > n || b.busy || len(b.queue) != 0 || b.leaves != 0 {
		t.Fatalf("%d signatures, busy %v, queue %d, leaves %d", sigs, b.busy, len(b.queue), b.leaves)
	}
}

package mailbox

import "testing"

func TestNotifier(t *testing.T) {
	var n Notifier
	a, b := ID{1}, ID{2}
	sa := n.Subscribe(a)
	sa2 := n.Subscribe(a)
	sb := n.Subscribe(b)
	n.Notify(a)
	n.Notify(a) // coalesced: the buffer holds one signal
	for _, s := range []*Subscription{sa, sa2} {
		select {
		case <-s.C:
		default:
			t.Fatal("subscription of a not signalled")
		}
		select {
		case <-s.C:
			t.Fatal("two signals for coalesced notifications")
		default:
		}
	}
	select {
	case <-sb.C:
		t.Fatal("subscription of b signalled for a")
	default:
	}
	sa.Close()
	sa.Close()
	if _, ok := <-sa.C; ok {
		t.Fatal("closed subscription's channel is open")
	}
	n.Notify(a) // must not panic on the closed one
	<-sa2.C
	n.NotifyAll([]ID{{3}, a, a})
	<-sa2.C
	select {
	case <-sb.C:
		t.Fatal("NotifyAll signalled b")
	case <-sa2.C:
		t.Fatal("NotifyAll did not coalesce")
	default:
	}
	n.Close()
	if _, ok := <-sb.C; ok {
		t.Fatal("Close left a channel open")
	}
	sb.Close()
	late := n.Subscribe(a)
	if _, ok := <-late.C; ok {
		t.Fatal("subscription after Close is open")
	}
	late.Close()
	if len(n.subs) != 0 {
		t.Fatal("subscriptions retained")
	}
}

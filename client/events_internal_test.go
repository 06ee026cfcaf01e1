package client

import (
	"testing"
)

func drain(c *Client) []Event {
	var out []Event
	for len(c.events) > 0 {
		out = append(out, <-c.events)
	}
	return out
}

// TestEventsKeepSecurityEvents: a flood of messages behind a slow UI does
// not push security events out of the stream; other events are dropped
// oldest first, order is kept, and drops are counted; only a buffer full
// of security events drops one of them, counted as such.
func TestEventsKeepSecurityEvents(t *testing.T) {
	c := &Client{events: make(chan Event, 8)}
	c.emit(Event{Kind: EventContactChanged})
	c.emit(Event{Kind: EventRevoked})
	for i := range 10000 {
		c.emit(Event{Kind: EventMessage, Message: MessageID{byte(i), byte(i >> 8)}})
	}
	c.emit(Event{Kind: EventAlert})
	got := drain(c)
	if len(got) != 8 || got[0].Kind != EventContactChanged || got[1].Kind != EventRevoked || got[7].Kind != EventAlert {
		t.Fatalf("stream after the flood: %v", kinds(got))
	}
	// The newest messages survive, in order.
	for i, e := range got[2:7] {
		n := 10000 - 5 + i
		if e.Kind != EventMessage || e.Message != (MessageID{byte(n), byte(n >> 8)}) {
			t.Fatalf("message %d: %+v", i, e)
		}
	}
	if all, sec := c.DroppedEvents(); all != 10000-5 || sec != 0 {
		t.Fatalf("dropped %d, %d security", all, sec)
	}

	// A buffer of security events only: a message is dropped itself, a
	// further security event drops the oldest one, counted.
	for range 8 {
		c.emit(Event{Kind: EventError})
	}
	c.emit(Event{Kind: EventMessage})
	c.emit(Event{Kind: EventAlert})
	got = drain(c)
	if len(got) != 8 || got[7].Kind != EventAlert {
		t.Fatalf("stream: %v", kinds(got))
	}
	for _, e := range got[:7] {
		if e.Kind != EventError {
			t.Fatalf("stream: %v", kinds(got))
		}
	}
	if all, sec := c.DroppedEvents(); all != 10000-5+2 || sec != 1 {
		t.Fatalf("dropped %d, %d security", all, sec)
	}
	// Room again: nothing is dropped.
	c.emit(Event{Kind: EventMessage})
	if got := drain(c); len(got) != 1 {
		t.Fatalf("stream: %v", kinds(got))
	}
}

func kinds(es []Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Kind.String())
	}
	return out
}

package client

import "sync"

// The event stream (Events). It is bounded (eventBuffer); when a UI falls
// behind, emit makes room by dropping the oldest event that is not a
// security event, so that a flood of messages or receipts cannot push a
// revocation, a monitoring alert, a contact's key change or a refused
// message out of the stream. Only when every buffered event is a security
// event is the oldest of them dropped, and counted (DroppedEvents). History
// stays the record of messages either way.

// Security reports whether events of kind k are security events, which
// the stream drops last: EventRevoked, EventAlert, EventContactChanged and
// EventError.
func (k EventKind) Security() bool {
	switch k {
	case EventRevoked, EventAlert, EventContactChanged, EventError:
		return true
	}
	return false
}

// eventDrops counts the events emit dropped.
type eventDrops struct {
	mu            sync.Mutex // serialises emit
	all, security uint64
}

// DroppedEvents returns how many events the stream dropped because the UI
// did not read them in time, and how many of those were security events
// (zero unless the whole buffer held security events).
func (c *Client) DroppedEvents() (all, security uint64) {
	c.drops.mu.Lock()
	defer c.drops.mu.Unlock()
	return c.drops.all, c.drops.security
}

// emit adds e to the event stream without blocking.
func (c *Client) emit(e Event) {
	c.drops.mu.Lock()
	defer c.drops.mu.Unlock()
	select {
	case c.events <- e:
		return
	default:
	}
	// Full: take out what is buffered (the UI may read some meanwhile),
	// drop the oldest non-security event, or else e if it is not one,
	// or else the oldest security event, and put the rest back in order.
	var held []Event
	for len(held) < cap(c.events) {
		select {
		case x := <-c.events:
			held = append(held, x)
			continue
		default:
		}
		break
	}
	drop := -1
	for i, x := range held {
		if !x.Kind.Security() {
			drop = i
			break
		}
	}
	if len(held) == cap(c.events) {
		c.drops.all++
		switch {
		case drop >= 0:
			held = append(held[:drop], held[drop+1:]...)
			held = append(held, e)
		case !e.Kind.Security():
		default:
			c.drops.security++
			held = append(held[1:], e)
		}
	} else {
		held = append(held, e) // the UI made room meanwhile
	}
	for _, x := range held {
		c.events <- x // fits: emit is the only sender, and held ≤ cap
	}
}

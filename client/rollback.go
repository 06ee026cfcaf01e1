package client

import (
	"errors"

	"github.com/moat-im/moat/server/store/mailbox"
)

// ErrRollback: the relay's signed head of this device's mailbox is lower,
// or signed earlier, than one the device verified before, which it keeps
// in its store across restarts: the relay lost messages it had
// acknowledged, such as by restarting on an old backup (adversarial case
// T40; docs/spec/content.md §Relay rollback). Nothing the relay serves
// then is processed; Sync returns it, Run returns it, and the event
// stream carries it as an EventError. It is mailbox.ErrRollback.
var ErrRollback = mailbox.ErrRollback

// noteRollback announces err on the event stream if it is a rollback,
// and returns it.
func (c *Client) noteRollback(err error) error {
	if errors.Is(err, ErrRollback) {
		c.log.Error("the relay rolled this device's mailbox back", "err", err)
		c.emit(Event{Kind: EventError, Err: err})
	}
	return err
}

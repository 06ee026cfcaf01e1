package client_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/moat-im/moat/client"
)

// TestTimelineOfContact: Bob sees Alice's security timeline, verified:
// her addition, her two devices, and
// the revocation of the second by an admin once published; Alice's own
// Timeline is the same. An unknown user is an *UnverifiedContactError.
func TestTimelineOfContact(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	a2 := w.a2.Self().Device
	w.s.RevokeDevice(w.alice, a2)
	w.s.Publish()

	tl, err := w.b1.TimelineOf(ctx, w.alice)
	ok(t, err)
	var got []string
	for _, e := range tl {
		s := e.Action
		if e.Device != (client.DeviceID{}) {
			s += " " + e.Device.String()
		}
		if len(e.Actors) > 0 {
			s += " by " + strings.Join(e.Actors, ",")
		}
		if e.Epoch == 0 || e.Time.IsZero() {
			t.Fatalf("entry %+v has no epoch or time", e)
		}
		got = append(got, s)
	}
	a1 := w.a1.Self().Device
	want := []string{"user_added", "device_added " + a1.String(), "device_added " + a2.String(), "device_revoked " + a2.String()}
	if len(got) != len(want) {
		t.Fatalf("timeline %q, want entries %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]+" by ") {
			t.Fatalf("entry %d: %q, want %q by ...", i, got[i], want[i])
		}
	}
	if !strings.Contains(got[3], "admin:") {
		t.Fatalf("the revocation %q does not name the admin", got[3])
	}

	own, err := w.a1.Timeline(ctx)
	ok(t, err)
	if len(own) != len(tl) {
		t.Fatalf("Alice's own timeline has %d entries, Bob's view %d", len(own), len(tl))
	}
	for i := range own {
		if own[i].Seq != tl[i].Seq || own[i].Action != tl[i].Action || own[i].Epoch != tl[i].Epoch {
			t.Fatalf("entry %d: own %+v, Bob's view %+v", i, own[i], tl[i])
		}
	}

	var stranger client.UserID
	rand.Read(stranger[:])
	_, err = w.b1.TimelineOf(ctx, stranger)
	if ue, isUE := errors.AsType[*client.UnverifiedContactError](err); !isUE || ue.User != stranger {
		t.Fatalf("timeline of an unknown user: %v, want *UnverifiedContactError", err)
	}
}

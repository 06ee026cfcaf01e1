package mls

// yieldRunnext lets an idle processor take at once the goroutine that
// the caller has just started or woken, while the caller goes on.
//
// The Go scheduler puts such a goroutine in the caller's processor's
// runnext slot, from which another processor steals it only after a
// pause (runtime.runqgrab sleeps about 3 µs before taking runnext from a
// running processor, which timer slack stretches to 50 µs or more). The
// parallel steps of Process (pathWork, pathHelper, pendingCheck) hand
// work to another goroutine up to three times, and each hand-over waited
// that long while the caller computed: starting an empty goroutine moves
// the woken one to the local run queue, from which it is stolen without
// a pause. If the runtime changes, the cost is one empty goroutine.
func yieldRunnext() { go func() {}() }

// goNow starts f on a new goroutine that an idle processor can take at
// once (yieldRunnext).
func goNow(f func()) {
	go f()
	yieldRunnext()
}

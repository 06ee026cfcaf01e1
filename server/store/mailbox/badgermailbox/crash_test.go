package badgermailbox

// Crash test support (T36, storage level). The test binary doubles as a
// load generator: with MOAT_MAILBOX_CRASH_DIR set, TestMain runs
// crashChild instead of the tests. The child opens the store, re-sends
// the messages a previous child had in flight, then enqueues and acks
// under load from many goroutines, printing one line per event:
//
//	S <mailbox> <n>            about to enqueue message n (mailboxtest.Msg)
//	E <mailbox> <n> <seq>      the enqueue was acknowledged with seq
//	a <mailbox> <seq>          about to ack up to seq
//	A <mailbox> <seq>          the ack was acknowledged
//
// TestT36CrashRecovery SIGKILLs it at random points, reopens the store and
// checks that every acknowledged message is present exactly once.

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/mailboxtest"
)

const (
	crashDirEnv   = "MOAT_MAILBOX_CRASH_DIR"
	crashRetryEnv = "MOAT_MAILBOX_CRASH_RETRY" // file of "<mailbox> <n>" lines to re-send
	crashBaseEnv  = "MOAT_MAILBOX_CRASH_BASE"  // first message number of this child
	crashBoxes    = 8
	crashWorkers  = 32
	crashBodySize = 1024
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		os.Exit(crashChild(dir))
	}
	os.Exit(m.Run())
}

// crashMsg is message n of mailbox mb in the crash test.
func crashMsg(mb mailbox.ID, n int) mailbox.Message {
	return mailboxtest.Msg(mb, n, 0, crashBodySize, time.Now(), time.Hour)
}

// crashChild runs until killed.
func crashChild(dir string) int {
	s, err := Open(context.Background(), Options{Dir: dir, Logger: quietLogger(), MemTableSize: testMemTable})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 2
	}
	var outMu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	emit := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		outMu.Unlock()
	}
	fail := func(err error) {
		outMu.Lock()
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	ctx := context.Background()
	send := func(mb mailbox.ID, n int) {
		emit("S %x %d", mb[:], n)
		r, err := s.Enqueue(ctx, mb, crashMsg(mb, n))
		if err != nil {
			fail(err)
		}
		emit("E %x %d %d", mb[:], n, r.Seq)
	}
	if p := os.Getenv(crashRetryEnv); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			fail(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" {
				continue
			}
			mb, n, err := parseBoxN(strings.Fields(line))
			if err != nil {
				fail(err)
			}
			send(mb, n)
		}
	}
	base, _ := strconv.Atoi(os.Getenv(crashBaseEnv))
	emit("R") // ready: retries done
	var wg sync.WaitGroup
	for w := range crashWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				send(mailboxtest.Box(rand.IntN(crashBoxes)), base+w*1_000_000+i)
			}
		}()
	}
	// One consumer acks half of each mailbox's backlog now and then.
	go func() {
		for {
			mb := mailboxtest.Box(rand.IntN(crashBoxes))
			st, err := s.Status(ctx, mb)
			if err != nil {
				fail(err)
			}
			upTo := st.Head - uint64(st.Messages)/2
			emit("a %x %d", mb[:], upTo)
			if err := s.Ack(ctx, mb, upTo); err != nil {
				fail(err)
			}
			emit("A %x %d", mb[:], upTo)
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	return 0
}

func parseBoxN(f []string) (mailbox.ID, int, error) {
	var mb mailbox.ID
	if len(f) < 2 {
		return mb, 0, fmt.Errorf("line %q", f)
	}
	b, err := hex.DecodeString(f[0])
	if err != nil || len(b) != 16 {
		return mb, 0, fmt.Errorf("mailbox %q", f[0])
	}
	copy(mb[:], b)
	n, err := strconv.Atoi(f[1])
	return mb, n, err
}

// crashModel is what the children acknowledged over all rounds.
type crashModel struct {
	acked    map[mailbox.ID]map[int]uint64 // message n -> seq
	inflight map[mailbox.ID]map[int]bool   // sent, not acknowledged
	retried  map[mailbox.ID]map[int]bool   // in flight when the round started
	ackMax   map[mailbox.ID]uint64         // highest ack attempted (possibly durable)
	headAt   map[mailbox.ID]uint64         // head at the last restart
	total    int
}

func (m *crashModel) apply(t *testing.T, lines []string) (events int) {
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "R" {
			continue
		}
		mb, n, err := parseBoxN(f[1:])
		if err != nil {
			t.Fatalf("child line %q: %v", line, err)
		}
		switch f[0] {
		case "S":
			if m.inflight[mb] == nil {
				m.inflight[mb] = map[int]bool{}
			}
			m.inflight[mb][n] = true
		case "E":
			seq, err := strconv.ParseUint(f[3], 10, 64)
			if err != nil {
				t.Fatalf("child line %q", line)
			}
			if m.acked[mb] == nil {
				m.acked[mb] = map[int]uint64{}
			}
			if old, ok := m.acked[mb][n]; ok && old != seq {
				t.Fatalf("mailbox %x message %d: acknowledged at seq %d, then at %d", mb[:], n, old, seq)
			}
			// A message never sent before gets a sequence number above the
			// head that a previous child left. (A retry of a message in
			// flight at the kill may have been stored before it.)
			if _, ok := m.acked[mb][n]; !ok && !m.retried[mb][n] && seq <= m.headAt[mb] {
				t.Fatalf("mailbox %x: new message %d got seq %d, at or below the head %d before the restart", mb[:], n, seq, m.headAt[mb])
			}
			m.acked[mb][n] = seq
			delete(m.inflight[mb], n)
			events++
		case "a":
			m.ackMax[mb] = max(m.ackMax[mb], uint64(n))
		case "A":
			events++
		}
	}
	return events
}

// check reads the reopened store: every acknowledged message above the
// highest attempted ack is there, once, with its seq and body; no message
// id appears twice; heads cover every acknowledged seq.
func (m *crashModel) check(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	for b := range crashBoxes {
		mb := mailboxtest.Box(b)
		st, err := s.Status(ctx, mb)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[mailbox.MessageID]uint64{}
		after := uint64(0)
		for {
			p, err := s.Fetch(ctx, mb, after, mailbox.MaxFetch)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Messages) == 0 {
				break
			}
			for _, g := range p.Messages {
				if prev, dup := seen[g.ID]; dup {
					t.Fatalf("mailbox %x: message %v at seq %d and %d", mb[:], g.ID, prev, g.Seq)
				}
				seen[g.ID] = g.Seq
				after = g.Seq
			}
		}
		for n, seq := range m.acked[mb] {
			if seq > st.Head {
				t.Fatalf("mailbox %x: head %d below acknowledged seq %d", mb[:], st.Head, seq)
			}
			if seq <= m.ackMax[mb] {
				continue
			}
			want := crashMsg(mb, n)
			got, ok := seen[want.ID]
			if !ok {
				t.Fatalf("mailbox %x: acknowledged message %d (seq %d) lost", mb[:], n, seq)
			}
			if got != seq {
				t.Fatalf("mailbox %x: message %d at seq %d, acknowledged at %d", mb[:], n, got, seq)
			}
		}
		m.headAt[mb] = st.Head
	}
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestT36CrashRecovery kills a child enqueuing and acking under load with
// SIGKILL at random points, restarts, and checks that every acknowledged
// message survives exactly once and no sequence number is reused. Short:
// a few iterations; MOAT_LONG=1: many.
func TestT36CrashRecovery(t *testing.T) {
	iterations := 4
	if os.Getenv("MOAT_LONG") == "1" {
		iterations = 40
	}
	dir := t.TempDir()
	m := &crashModel{acked: map[mailbox.ID]map[int]uint64{}, inflight: map[mailbox.ID]map[int]bool{}, ackMax: map[mailbox.ID]uint64{}, headAt: map[mailbox.ID]uint64{}}
	retryFile := filepath.Join(t.TempDir(), "retry")
	for it := range iterations {
		var retry strings.Builder
		nretry := 0
		m.retried = map[mailbox.ID]map[int]bool{}
		for mb, ns := range m.inflight {
			m.retried[mb] = map[int]bool{}
			for n := range ns {
				m.retried[mb][n] = true
				fmt.Fprintf(&retry, "%x %d\n", mb[:], n)
				nretry++
			}
		}
		if err := os.WriteFile(retryFile, []byte(retry.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		lines, stderr := runCrashChild(t, dir, retryFile, (it+1)*100_000_000, time.Duration(50+rand.IntN(300))*time.Millisecond)
		events := m.apply(t, lines)
		m.total += events
		s, err := Open(context.Background(), Options{Dir: dir, Logger: quietLogger(), MemTableSize: testMemTable, SweepInterval: -1})
		if err != nil {
			t.Fatalf("iteration %d: reopening after SIGKILL: %v\nchild stderr: %s", it, err, stderr)
		}
		m.check(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("iteration %d: %d retries, %d acknowledged events before the kill", it, nretry, events)
	}
	if m.total == 0 {
		t.Fatal("no child acknowledged anything before it was killed")
	}
}

// runCrashChild starts a child on dir, lets it run for about d after it
// is ready, SIGKILLs it and returns its complete output lines.
func runCrashChild(t *testing.T, dir, retryFile string, base int, d time.Duration) ([]string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRetryEnv+"="+retryFile, crashBaseEnv+"="+strconv.Itoa(base))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		r := false
		for sc.Scan() {
			line := sc.Text()
			lines = append(lines, line)
			if line == "R" && !r {
				r = true
				close(ready)
			}
		}
		if !r {
			close(ready)
		}
	}()
	select {
	case <-ready:
	case <-time.After(2 * time.Minute):
		t.Fatal("child not ready")
	}
	time.Sleep(d)
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child ended by itself (%v): %s", err, stderr.String())
	}
	// The last line may be cut short by the kill; a line is complete when
	// a newline followed it, which the scanner cannot tell, so drop a last
	// line that does not parse.
	if n := len(lines); n > 0 && !completeLine(lines[n-1]) {
		lines = lines[:n-1]
	}
	return lines, stderr.String()
}

// completeLine reports whether line has every field of its kind.
func completeLine(line string) bool {
	f := strings.Fields(line)
	if len(f) == 0 {
		return false
	}
	want := map[string]int{"S": 3, "E": 4, "a": 3, "A": 3, "R": 1}[f[0]]
	if len(f) != want {
		return false
	}
	if f[0] == "E" || f[0] == "a" || f[0] == "A" {
		if len(f[1]) != 32 {
			return false
		}
	}
	return true
}

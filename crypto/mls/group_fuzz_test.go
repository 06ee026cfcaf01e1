package mls

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
)

// FuzzGroupInteraction drives a group of up to fzMaxMembers clients
// through adds, removes, updates and commits proposed and committed by
// different members, with a delivery service that orders handshake
// messages (the first Commit of an epoch wins; handshake messages for
// another epoch are dropped) while members catch up with it at different
// times, and with application messages delivered late, in any order,
// duplicated or not at all. Handshake messages reach each member in the
// delivery service's order (a member may lag, and may get one again, but
// never skips one or sees them reordered), as Moat's relay delivers them;
// they are PrivateMessages or, with 0x40 in the first byte,
// PublicMessages. It checks that:
//
//   - every rejected message, and every handshake message delivered
//     again, leaves the receiver's state byte-identical;
//   - members that have caught up agree on the epoch authenticator and tree;
//   - an application message decrypts only to what was sent, at most once
//     per receiver, and never for a member that was not in the group in
//     the message's epoch (removed members cannot decrypt);
//   - a first delivery to a member in the sending epoch always decrypts.
func FuzzGroupInteraction(f *testing.F) {
	for _, seed := range interactionSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 96 {
			ops = ops[:96]
		}
		runInteraction(t, ops)
	})
}

// interactionSeeds are FuzzGroupInteraction's seeds: sequences written
// by hand for each operation, some found by random search, and
// pseudo-random ones. TestInteractionSeedsCoverage checks what they
// exercise.
func interactionSeeds() [][]byte {
	var seeds [][]byte
	seeds = append(seeds, []byte{0, 0, 6, 0, 6, 1, 4, 0, 5, 0, 1, 2, 1, 6, 0, 6, 1, 3, 1, 6, 0, 6, 1, 4, 1, 5, 0, 0})
	seeds = append(seeds, []byte{0, 0, 0, 1, 3, 0, 6, 1, 6, 2, 1, 0, 1, 3, 1, 6, 0, 6, 1, 6, 2, 4, 2, 5, 1, 0, 5, 1, 1, 7, 1, 0})
	seeds = append(seeds, []byte{0, 0, 3, 0, 4, 0, 2, 1, 6, 1, 3, 1, 6, 0, 4, 1, 6, 0, 5, 0, 0, 5, 0, 0, 7, 0, 1, 1, 3, 0, 3, 2})
	seeds = append(seeds, []byte{0, 0, 0, 1, 0, 2, 3, 0, 6, 1, 6, 2, 6, 3, 2, 1, 2, 2, 3, 3, 6, 0, 6, 1, 6, 2, 6, 3, 4, 3, 5, 0, 2})
	// X-Wing (the top bit of the first byte), with duplicate Adds (0x40 in
	// a propose-Add argument) that the committer must leave out.
	seeds = append(seeds, []byte{0x80, 0, 0, 0x40, 0, 0x41, 6, 0, 6, 1, 3, 0, 6, 1, 4, 1, 5, 0, 0, 0x41, 6, 0, 6, 1, 6, 2, 3, 1, 6, 0, 6, 2, 4, 2, 5, 1})
	seeds = append(seeds, []byte{0, 0, 0, 0x40, 0, 0x41, 6, 0, 6, 1, 3, 1, 6, 0, 6, 1, 6, 2, 0, 0x42, 3, 2, 6, 0, 6, 1, 6, 2, 4, 0, 5, 1})
	// A stranger's self-Add (0x20 in a propose-Add argument), refused by
	// everyone, between ordinary operations.
	seeds = append(seeds, []byte{0, 0, 0, 1, 3, 0, 6, 1, 0, 0x20, 0, 0x21, 3, 1, 6, 0, 6, 1, 4, 0, 5, 1, 0, 0x22, 2, 2, 6, 0, 6, 1, 3, 2})
	// The same operations with handshake messages as PublicMessages (0x40
	// in the first byte), re-delivered ones included.
	for _, seed := range slices.Clone(seeds[:4]) {
		seed = slices.Clone(seed)
		seed[0] |= 0x40
		seeds = append(seeds, seed)
	}
	// Sequences found by random search in which members are removed while
	// application messages are in flight.
	for _, h := range []string{
		"01ba066d064f047b0347015f011a045c06f1002207c8015b061606df020b065005a9039905fb013301bb05b9057105cf032501a200bf050f01eb067803cc0059067e00e7044e001e062e0686039a02bb066d04880693003c05d604da01d90144",
		"017903cf074605a303ca04270483032b067f03e406e005fb068902de01fa06e703a3079005b606df07f80658009305d603a4007101ad042e0119039701990148076406860676036400d2030004ea055000c300e6004204ab049702fb03100150",
		"011002a401a3078e06f40710028900a500f9034a05b90601071e071406bb002206fd013803ea00d8048f0608011206890077019e05e1023f03c9062807f205f402c40354027e01b506c8077203b906030086061b043906ed067b03ac038404bd",
		"063400cf04ca01080687042803bb06f6075505d6011900690073027b070e061e053406ef003e01b0020506f4003f064f036302dd02a8069d033306c00386026805820314071e042d0649043e0442034905a50322063a05d104e001b2036c0598",
	} {
		b, _ := hex.DecodeString(h)
		seeds = append(seeds, b)
	}
	// Pseudo-random op sequences exercise every operation from the start.
	r := rand.New(rand.NewPCG(1, 2))
	for range 6 {
		seed := make([]byte, 96)
		for i := range seed {
			seed[i] = byte(r.Uint32())
		}
		seeds = append(seeds, seed)
	}
	return seeds
}

// TestInteractionSeedsCoverage: the seeds of FuzzGroupInteraction run
// (as they do under go test) and between them remove members while
// application messages are in flight, send handshake messages as
// PublicMessages and re-deliver them, and run both suites.
func TestInteractionSeedsCoverage(t *testing.T) {
	var removedWithApps, publicRedelivered, privateRedelivered, xwing bool
	for _, seed := range interactionSeeds() {
		if len(seed) > 96 {
			seed = seed[:96]
		}
		st := probeInteraction(t, seed)
		removedWithApps = removedWithApps || (st.removedCount > 0 && st.apps > 0)
		publicRedelivered = publicRedelivered || (st.public && st.redelivered > 0)
		privateRedelivered = privateRedelivered || (!st.public && st.redelivered > 0)
		xwing = xwing || seed[0]&0x80 != 0
	}
	if !removedWithApps || !publicRedelivered || !privateRedelivered || !xwing {
		t.Fatalf("seeds cover: removal with application messages %v, public re-delivery %v, private re-delivery %v, X-Wing %v",
			removedWithApps, publicRedelivered, privateRedelivered, xwing)
	}
}

const fzMaxMembers = 5

type fzMember struct {
	c       *testClient
	cursor  int    // next handshake log entry to process
	joined  uint64 // first epoch it is a member in
	removed uint64 // first epoch it is no longer a member in (0: member)
	got     map[int]bool
}

type fzApp struct {
	epoch  uint64
	sender *fzMember
	text   []byte
	msg    []byte
}

type fzWorld struct {
	t       *testing.T
	members []*fzMember // everyone who ever joined
	log     [][]byte    // the delivery service's handshake log
	dsEpoch uint64
	apps    []fzApp
	next    int
	joiners []*testClient // clients whose Add was proposed, in order
}

func (w *fzWorld) active() []*fzMember {
	var out []*fzMember
	for _, m := range w.members {
		if m.removed == 0 {
			out = append(out, m)
		}
	}
	return out
}

// deliverHandshake has m process log entries until it has seen n more or
// the log ends.
func (w *fzWorld) catchUp(m *fzMember, n int) {
	for ; n > 0 && m.cursor < len(w.log) && m.removed == 0; n-- {
		msg := w.log[m.cursor]
		m.cursor++
		p, err := m.c.g.Process(msg)
		if err != nil {
			w.t.Fatalf("%s: log entry %d: %v", m.c.name, m.cursor-1, err)
		}
		if p.Kind == ProcessedCommit && p.Commit.RemovedSelf {
			m.removed = p.Commit.NewEpoch
		}
	}
}

// submit offers a handshake message to the delivery service.
func (w *fzWorld) submit(msg []byte) bool {
	m, err := DecodeMLSMessage(msg)
	if err != nil {
		w.t.Fatal(err)
	}
	var epoch uint64
	if m.PublicMessage != nil {
		epoch = m.PublicMessage.Content.Epoch
	} else {
		epoch = m.PrivateMessage.Epoch
	}
	if epoch != w.dsEpoch {
		return false
	}
	w.log = append(w.log, msg)
	return true
}

type interactionStats struct {
	removedCount, apps int
	epoch              uint64
	public             bool // handshake messages were PublicMessages
	redelivered        int  // handshake messages delivered again
}

func runInteraction(t *testing.T, ops []byte) { probeInteraction(t, ops) }

func probeInteraction(t *testing.T, ops []byte) (st interactionStats) {
	// The first byte's top bit picks the suite: the classical baseline or
	// Moat's default, X-Wing. Its next bit sends every handshake message
	// as a PublicMessage (Config.PublicHandshake) instead of a
	// PrivateMessage.
	cs := testSuites[0]
	if len(ops) > 0 && ops[0]&0x80 != 0 {
		cs = testSuites[1]
	}
	public := len(ops) > 0 && ops[0]&0x40 != 0
	st.public = public
	w := &fzWorld{t: t}
	creator := newTestClient(t, cs, "m0")
	creator.cfg.PublicHandshake = public
	g, err := NewGroup(creator.cfg, creator.kp, creator.kps, creator.sig, NewGroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	creator.g = g
	w.members = []*fzMember{{c: creator, got: map[int]bool{}}}
	w.next = 1
	arg := func(i int) int {
		if i < len(ops) {
			return int(ops[i])
		}
		return 0
	}
	for i := 0; i < len(ops); i += 2 {
		act := w.active()
		if len(act) == 0 {
			return st
		}
		m := act[arg(i+1)%len(act)]
		switch ops[i] % 8 {
		case 0, 1, 2: // propose Add / Remove / Update
			if !m.c.g.Active() || m.c.g.HasPendingCommit() || m.c.cursorBehind(m, w) {
				continue
			}
			var msg []byte
			switch ops[i] % 8 {
			case 0:
				if arg(i+1)&0x60 == 0x20 {
					// A stranger's self-Add (new_member_proposal, no
					// Policy): every member refuses it, unchanged.
					w.injectStrangerAdd(m, cs)
					continue
				}
				if arg(i+1)&0x40 != 0 && len(w.joiners) > 0 {
					// Another Add of a client already proposed: the
					// committer must leave the duplicate out (§12.2).
					msg, err = m.c.g.ProposeAdd(w.joiners[len(w.joiners)-1].kp)
					break
				}
				if len(act) >= fzMaxMembers {
					continue
				}
				nc := newTestClient(t, cs, fmt.Sprintf("m%d", w.next))
				nc.cfg.PublicHandshake = public
				w.next++
				msg, err = m.c.g.ProposeAdd(nc.kp)
				w.joiners = append(w.joiners, nc)
			case 1:
				others := m.c.g.Members()
				if len(others) < 2 {
					continue
				}
				victim := others[(arg(i+1)/5)%len(others)].LeafIndex
				if victim == m.c.g.LeafIndex() {
					continue
				}
				msg, err = m.c.g.ProposeRemove(victim)
			case 2:
				msg, err = m.c.g.ProposeUpdate()
			}
			if err != nil {
				t.Fatalf("%s: propose: %v", m.c.name, err)
			}
			if !w.submit(msg) {
				t.Fatalf("proposal for the current epoch refused")
			}
			m.cursor = len(w.log) // its own proposal is cached already
		case 3: // commit
			if !m.c.g.Active() || m.c.g.HasPendingCommit() || m.c.cursorBehind(m, w) {
				continue
			}
			res, err := m.c.g.Commit(CommitOptions{NoPath: arg(i+1)&0x80 != 0})
			if err != nil {
				t.Fatalf("%s: commit: %v", m.c.name, err)
			}
			if !w.submit(res.Message) {
				m.c.g.ClearPendingCommit()
				continue
			}
			w.dsEpoch++
			// The delivery service acknowledges: the committer merges.
			if _, err := m.c.g.MergePendingCommit(); err != nil {
				t.Fatalf("%s: merge: %v", m.c.name, err)
			}
			m.cursor = len(w.log)
			w.admit(res, m.c.g.RatchetTree())
		case 4: // send an application message
			if !m.c.g.Active() || len(m.c.g.st.proposals) > 0 {
				continue
			}
			text := []byte(fmt.Sprintf("app %d from %s", len(w.apps), m.c.name))
			msg, err := m.c.g.Encrypt(text, nil)
			if err != nil {
				t.Fatalf("%s: encrypt: %v", m.c.name, err)
			}
			w.apps = append(w.apps, fzApp{epoch: m.c.g.Epoch(), sender: m, text: text, msg: msg})
		case 5: // deliver an application message (maybe again, maybe late)
			if len(w.apps) == 0 {
				continue
			}
			k := arg(i+1) % len(w.apps)
			recv := w.members[(arg(i+1)/7)%len(w.members)]
			w.deliverApp(k, recv)
		case 6: // a member catches up with the log
			w.catchUp(m, 1+arg(i+1)%4)
		case 7: // a handshake message re-delivered to someone who saw it
			if m.cursor == 0 {
				continue
			}
			msg := w.log[arg(i+1)%m.cursor]
			before := stateFingerprint(m.c.g)
			m.c.g.Process(msg) // a proposal seen before is cached once
			if stateFingerprint(m.c.g) != before {
				t.Fatalf("%s: re-delivered handshake message changed the state", m.c.name)
			}
			st.redelivered++
		}
	}
	// Everyone catches up; the members agree.
	for _, m := range w.members {
		w.catchUp(m, len(w.log))
	}
	st.removedCount, st.apps, st.epoch = len(w.members)-len(w.active()), len(w.apps), w.dsEpoch
	if testing.Verbose() {
		t.Logf("%d members ever, %d active, epoch %d, %d handshake messages, %d application messages",
			len(w.members), len(w.active()), w.dsEpoch, len(w.log), len(w.apps))
	}
	act := w.active()
	for _, m := range act[1:] {
		if !bytes.Equal(m.c.g.EpochAuthenticator(), act[0].c.g.EpochAuthenticator()) || m.c.g.Epoch() != act[0].c.g.Epoch() {
			t.Fatalf("%s and %s disagree", m.c.name, act[0].c.name)
		}
	}
	// Every application message to every member once more.
	for k := range w.apps {
		for _, m := range w.members {
			w.deliverApp(k, m)
		}
	}
	return st
}

// cursorBehind reports whether m has log entries left to process (it
// then cannot propose or commit for the delivery service's epoch).
func (c *testClient) cursorBehind(m *fzMember, w *fzWorld) bool {
	return m.cursor != len(w.log) || c.g.Epoch() != w.dsEpoch
}

// admit joins the members a Commit accepted by the delivery service adds,
// with the tree served out of band.
func (w *fzWorld) admit(res *CommitResult, tree RatchetTree) {
	if res.Welcome == nil {
		return
	}
	m, _ := DecodeMLSMessage(res.Welcome)
	var waiting []*testClient
	for _, c := range w.joiners {
		ref, _ := c.kp.Ref()
		if findWelcomeSecrets(m.Welcome, ref) == nil {
			waiting = append(waiting, c)
			continue
		}
		g, err := Join(c.cfg, res.Welcome, c.kp, c.kps, c.sig, JoinOptions{RatchetTree: tree})
		if err != nil {
			w.t.Fatalf("%s: join: %v", c.name, err)
		}
		c.g = g
		w.members = append(w.members, &fzMember{c: c, cursor: len(w.log), joined: g.Epoch(), got: map[int]bool{}})
	}
	w.joiners = waiting
}

func (w *fzWorld) deliverApp(k int, recv *fzMember) {
	a := w.apps[k]
	if recv == a.sender || recv.c.g == nil {
		return
	}
	g := recv.c.g
	before := stateFingerprint(g)
	p, err := g.Process(a.msg)
	inEpoch := a.epoch >= recv.joined && (recv.removed == 0 || a.epoch < recv.removed)
	if err != nil {
		if stateFingerprint(g) != before {
			w.t.Fatalf("%s: rejected application message %d changed the state: %v", recv.c.name, k, err)
		}
		if inEpoch && !recv.got[k] && g.Epoch() == a.epoch && g.Active() && a.sender.removed == 0 {
			w.t.Fatalf("%s: first delivery of message %d in its epoch failed: %v", recv.c.name, k, err)
		}
		return
	}
	if !inEpoch {
		w.t.Fatalf("%s: decrypted message %d of epoch %d while not a member (joined %d, removed %d)", recv.c.name, k, a.epoch, recv.joined, recv.removed)
	}
	if recv.got[k] {
		w.t.Fatalf("%s: decrypted message %d twice", recv.c.name, k)
	}
	if !bytes.Equal(p.ApplicationData, a.text) {
		w.t.Fatalf("%s: message %d decrypted to something else", recv.c.name, k)
	}
	recv.got[k] = true
}

// injectStrangerAdd offers every active member a new_member_proposal Add
// from a client outside the group, framed for m's epoch: with no Policy
// to authorise it, each must refuse it and keep its state.
func (w *fzWorld) injectStrangerAdd(m *fzMember, cs CipherSuite) {
	stranger := newTestClient(w.t, cs, "stranger")
	g := m.c.g
	fc := g.contentFrom(0)
	fc.Sender = Sender{Type: SenderTypeNewMemberProposal}
	fc.ContentType, fc.Proposal = ContentTypeProposal, &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *stranger.kp}}
	relay := &Group{suite: g.suite, st: epochState{ctx: g.st.ctx, keys: &schedule.Epoch{MembershipKey: make([]byte, g.suite.Nh())}}}
	msg := forgeMessage(w.t, relay, fc, stranger.sig, true, nil)
	for _, a := range w.active() {
		before := stateFingerprint(a.c.g)
		if _, err := a.c.g.Process(msg); err == nil {
			w.t.Fatalf("%s: accepted a stranger's self-Add", a.c.name)
		}
		if stateFingerprint(a.c.g) != before {
			w.t.Fatalf("%s: refused stranger's self-Add changed the state", a.c.name)
		}
	}
}

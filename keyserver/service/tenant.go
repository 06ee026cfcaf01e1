package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

// entriesLabel is the store label under which the service keeps the log's
// epoch entries: version e+1 is the EpochEntry of epoch e. It is not a VRF
// output and is never in the map; the store only needs it to be a label no
// VRF output takes (a 2^-256 event). The log itself keeps only hashes, and
// every proof bundle carries its epoch's entry.
var entriesLabel = vmap.Label(sha256.Sum256([]byte("moat/v1/directory-service/epoch-entries")))

// TenantConfig configures one tenant of a Service: its store (one store,
// one log, one map per tenant), its keys and its witnesses.
type TenantConfig struct {
	ID    org.TenantID
	Store store.DirectoryStore
	Keys  *TenantKeys
	// Create holds the parameters of a new tenant, used only if the store
	// is empty: the service then creates the tenant and commits epoch 0.
	Create *CreateParams
	// Witnesses are asked to cosign every checkpoint.
	Witnesses []WitnessClient
	// KeyStore, if set, provides the new keys of admin/rotate-ca and
	// admin/rotate-log-key, having stored them where the service finds
	// them at its next start (TenantKeys.NextCAs, NextLogs). Without it
	// those operations answer 501.
	KeyStore KeyStore
}

// CreateParams are the parameters of a new tenant.
type CreateParams struct {
	// Origin is the log origin, "<service domain>/directory/<tenant>"
	// (docs/spec/tlog.md §Origin).
	Origin    string
	Admins    []*org.AdminKey
	Threshold int
	Witnesses org.WitnessSet
	Config    org.Config
}

// Origin returns the log origin of tenant under the operator's domain.
func Origin(domain string, tenant org.TenantID) string {
	return domain + "/directory/" + tenant.String()
}

// Tenant is one tenant's key directory: the tenant's admin state machine
// (org.Tenant), its map and log over one store, its keys and witnesses.
// docs/spec/directory.md §Publishing an epoch is PublishEpoch; the read
// methods build the proof bundles of §Proof bundles.
type Tenant struct {
	id       org.TenantID
	origin   string
	keys     *TenantKeys
	st       store.DirectoryStore
	ts       *store.TreeStore
	m        *vmap.Map
	log      *slog.Logger
	met      *metrics
	now      func() time.Time
	opts     *Options
	keyStore KeyStore

	// mu serialises the admin state machine, enrolment and publishing.
	mu        sync.Mutex
	org       *org.Tenant
	dirty     bool // org changed since the state last committed
	approvals map[[32]byte]*pendingApprovals
	// forge rewrites the next epoch's updates (ForgeNextEpoch, tests).
	forge func([]org.Update) ([]org.Update, error)
	// bundleApprovals are the admin approvals of proposed trust bundles
	// and admin rosters, by the hash of their approval message (the
	// messages are label-separated, so the two never collide).
	bundleApprovals map[[32]byte]*pendingApprovals
	lastRec         map[vmap.Label]recHead // latest record of labels written, for the next version
	lastEntry       kt.EpochEntry          // entry of the head epoch
	// cas and logKeys are every CA signer and log key the service holds
	// (rotate.go): it signs with those the published trust bundle names.
	cas     []org.Signer
	logKeys []*keys.LogPrivateKey
	// caProposal and logProposal are the rotations under approval.
	caProposal, logProposal *keyProposal
	// unlodged are the lodged records the running operation used up,
	// deleted once its changes are durable (lodged.go).
	unlodged []store.LodgedKey
	// transitions are the epochs that published a new trust bundle, in
	// order (transitions.go; an immutable slice, replaced on change).
	transitions atomic.Pointer[[]transition]

	tree   atomic.Pointer[tlog.Tree]
	head   atomic.Pointer[store.Head] // the latest committed head
	served atomic.Pointer[served]     // what readers are served
	trust  atomic.Pointer[trustInfo]

	vrfMu      sync.Mutex
	vrfCache   map[string]vrfOutput
	vrfUnsaved []store.VRFOutput // evaluated, not yet in the store (vrfcache.go)
	vrfID      [32]byte          // the VRF key's id in the store

	devMu   sync.RWMutex
	devices map[org.DeviceID]authDevice
	byUser  map[org.UserID][]org.DeviceID

	nonces *replayCache
	jr     *journal // pending records, durable before an operation's answer (journal.go)
	cos    *cosigner
	kick   chan struct{} // an on-demand epoch was asked for
}

type recHead struct {
	version    uint32
	epoch      uint64
	commitment vmap.Commitment
}

type vrfOutput struct {
	label vmap.Label
	proof []byte
}

// served is the checkpoint readers get, and its epoch's entry: the latest
// checkpoint a witness quorum cosigned. It lags the committed head while
// the witnesses are being asked.
type served struct {
	size  uint64
	note  []byte
	entry kt.EpochEntry
	at    time.Time // witnessed time
}

type trustInfo struct {
	bundle *org.TrustBundle
	enc    []byte
	vcfg   tlog.VerifierConfig
	roster *org.AdminRoster
	// from is the smallest checkpoint size signed and cosigned under
	// bundle; smaller ones are under prev, the bundle in force before
	// (docs/spec/directory.md §Trust bundle changes: the checkpoint of
	// the epoch that publishes a bundle is under the one before it).
	// prev is nil if the service has not seen the change (a restart).
	from uint64
	prev *trustInfo
}

// checkpointTrust returns the trust under which the checkpoint of size
// n is signed and cosigned.
func (ti *trustInfo) checkpointTrust(n uint64) *trustInfo {
	if n < ti.from && ti.prev != nil {
		return ti.prev
	}
	return ti
}

type authDevice struct {
	user      org.UserID
	key       *keys.IdentitySigningPublicKey
	identity  keys.DeviceIdentity
	serial    uint64
	notBefore time.Time
	notAfter  time.Time
}

type pendingApprovals struct {
	user      org.UserID
	approvals []*org.Approval
	expires   time.Time
}

// ID returns the tenant id.
func (t *Tenant) ID() org.TenantID { return t.id }

// Origin returns the tenant log's origin.
func (t *Tenant) Origin() string { return t.origin }

// TrustBundle returns the tenant's current trust bundle.
func (t *Tenant) TrustBundle() *org.TrustBundle { return t.trust.Load().bundle }

// Head returns the latest committed head.
func (t *Tenant) Head() store.Head {
	if h := t.head.Load(); h != nil {
		return h.Clone()
	}
	return store.Head{}
}

// ServedNote returns the cosigned checkpoint note being served and its
// tree size, or nil and 0 if there is none yet.
func (t *Tenant) ServedNote() ([]byte, uint64) {
	if s := t.served.Load(); s != nil {
		return bytes.Clone(s.note), s.size
	}
	return nil, 0
}

// Admin runs f with the tenant's admin state machine, serialised with
// publishing and enrolment, and marks the state changed. It is for
// in-process administration (bootstrap, tests). It returns once what f
// changed is durable (journal.go), or the error that prevented it.
func (t *Tenant) Admin(f func(*org.Tenant) error) error {
	t.mu.Lock()
	if err := t.jr.check(); err != nil {
		t.mu.Unlock()
		return err
	}
	err := f(t.org)
	t.dirty = true
	je, jerr := t.durable()
	t.mu.Unlock()
	if jerr == nil {
		jerr = je.wait()
	}
	if err != nil {
		return err
	}
	return jerr
}

func openTenant(ctx context.Context, cfg TenantConfig, o *Options, met *metrics) (*Tenant, error) {
	if cfg.ID.IsZero() || cfg.Store == nil {
		return nil, errors.New("service: tenant config needs an id and a store")
	}
	if err := cfg.Keys.check(); err != nil {
		return nil, err
	}
	t := &Tenant{
		id: cfg.ID, keys: cfg.Keys, st: cfg.Store, ts: store.NewTreeStore(cfg.Store),
		m: vmap.New(cfg.Store, nil), log: o.Logger.With(slog.String("tenant", cfg.ID.String())),
		met: met, now: o.Now, opts: o, keyStore: cfg.KeyStore,
		approvals: map[[32]byte]*pendingApprovals{}, bundleApprovals: map[[32]byte]*pendingApprovals{}, lastRec: map[vmap.Label]recHead{},
		vrfCache: map[string]vrfOutput{}, devices: map[org.DeviceID]authDevice{}, byUser: map[org.UserID][]org.DeviceID{},
		nonces: newReplayCache(o.Limits.MaxNonces, o.Now().Unix()), kick: make(chan struct{}, 1),
		jr:      newJournal(cfg.Store, cfg.ID, 0, o.Logger.With(slog.String("tenant", cfg.ID.String())), met),
		cas:     append([]org.Signer{cfg.Keys.CA}, cfg.Keys.NextCAs...),
		logKeys: append([]*keys.LogPrivateKey{cfg.Keys.Log}, cfg.Keys.NextLogs...),
	}
	t.vrfID = vrfKeyID(t)
	var pendingUsers []org.UserID
	head, err := cfg.Store.Head(ctx)
	switch {
	case errors.Is(err, store.ErrEmpty):
		if cfg.Create == nil {
			return nil, fmt.Errorf("service: tenant %s: empty store and no creation parameters", cfg.ID)
		}
		p := cfg.Create
		t.org, err = org.NewTenant(org.TenantParams{
			ID: cfg.ID, Admins: p.Admins, Threshold: p.Threshold, LogOrigin: p.Origin,
			Log: cfg.Keys.Log.Public(), VRF: cfg.Keys.VRF.Public(), Witnesses: p.Witnesses, Config: p.Config,
		}, cfg.Keys.CA, t.now())
		if err != nil {
			return nil, fmt.Errorf("service: creating tenant %s: %w", cfg.ID, err)
		}
		t.dirty = true
		tree, err := tlog.NewTree(ctx, t.ts, 0)
		if err != nil {
			return nil, err
		}
		t.tree.Store(tree)
	case err != nil:
		return nil, fmt.Errorf("service: tenant %s: reading head: %w", cfg.ID, err)
	default:
		if err := t.load(ctx, head); err != nil {
			return nil, err
		}
		// The changes acknowledged after the head's epoch, which the
		// next epoch publishes.
		if pendingUsers, t.dirty, err = t.loadPending(ctx, t.org); err != nil {
			return nil, fmt.Errorf("service: tenant %s: %w", cfg.ID, err)
		}
	}
	if t.trust.Load() == nil {
		if err := t.setTrust(); err != nil {
			return nil, err
		}
	}
	t.origin = t.trust.Load().bundle.LogOrigin
	if t.head.Load() == nil {
		// A new tenant: epoch 0 holds its trust bundle, roster and org
		// chart, and its state.
		if _, err := t.publish(ctx, t.now()); err != nil {
			return nil, fmt.Errorf("service: creating tenant %s: first epoch: %w", cfg.ID, err)
		}
	} else {
		// The head's checkpoint is served at once if the witnesses
		// cosigned it before the restart (cosign.go stores it).
		if err := t.acceptNote(ctx, t.head.Load().Checkpoint); err != nil {
			t.log.Info("the stored head checkpoint is not cosigned yet; serving once the witnesses cosign it", slog.Any("reason", err))
		}
		t.checkHeadTransition()
		if err := t.indexAllDevices(ctx); err != nil {
			return nil, err
		}
		for _, u := range pendingUsers {
			t.indexUser(u)
		}
		// The approvals lodged before the restart (lodged.go), before
		// keep, which keeps the keys of rotations under approval.
		if err := t.loadLodged(ctx); err != nil {
			return nil, fmt.Errorf("service: tenant %s: %w", cfg.ID, err)
		}
	}
	t.jr.published(t.head.Load().Epoch)
	t.keep()
	t.cos = newCosigner(t, cfg.Witnesses)
	return t, nil
}

// load restores the tenant from the store's head: its admin state, the
// log tree, and the head's epoch entry. It checks that the stored state
// belongs to these keys and that the log matches the head's checkpoint.
func (t *Tenant) load(ctx context.Context, head store.Head) error {
	ot, err := t.loadOrg(ctx)
	if err != nil {
		return fmt.Errorf("service: tenant %s: %w", t.id, err)
	}
	b := ot.TrustBundle()
	if t.logKey(b.Log) == nil || !b.VRF.Equal(t.keys.VRF.Public()) {
		return fmt.Errorf("service: tenant %s: the keys do not match the tenant's trust bundle", t.id)
	}
	t.org = ot
	if err := t.loadTrust(ctx, head.LogSize); err != nil {
		return fmt.Errorf("service: tenant %s: %w", t.id, err)
	}
	tree, err := tlog.NewTree(ctx, t.ts, head.LogSize)
	if err != nil {
		return fmt.Errorf("service: tenant %s: %w", t.id, err)
	}
	// The head's checkpoint is signed under the bundle in force for its
	// size: the one before the latest if the head published it.
	hb := t.trust.Load().checkpointTrust(head.LogSize).bundle
	cp, err := tlog.OpenCheckpoint(head.Checkpoint, hb.LogOrigin, hb.Log)
	if err != nil {
		return fmt.Errorf("service: tenant %s: head checkpoint: %w", t.id, err)
	}
	root, err := tree.Root(ctx, head.LogSize)
	if err != nil {
		return fmt.Errorf("service: tenant %s: %w", t.id, err)
	}
	if cp.Size != head.LogSize || cp.Root != root || head.LogSize != head.Epoch+1 {
		return fmt.Errorf("service: tenant %s: %w: head checkpoint does not match the stored log", t.id, store.ErrCorrupt)
	}
	entry, err := t.entryAt(ctx, head.Epoch)
	if err != nil {
		return fmt.Errorf("service: tenant %s: %w", t.id, err)
	}
	if lh, err := entry.LeafHash(); err != nil || !t.leafIs(ctx, tree, head.Epoch, lh) {
		return fmt.Errorf("service: tenant %s: %w: epoch entry does not match the log", t.id, store.ErrCorrupt)
	}
	if err := t.loadTransitions(ctx); err != nil {
		return fmt.Errorf("service: tenant %s: %w", t.id, err)
	}
	t.lastEntry = *entry
	t.tree.Store(tree)
	h := head.Clone()
	t.head.Store(&h)
	t.met.logSize.WithLabelValues(t.id.String()).Set(float64(head.LogSize))
	return nil
}

func (t *Tenant) leafIs(ctx context.Context, tree *tlog.Tree, index uint64, leaf tlog.Hash) bool {
	hs, err := t.ts.ReadNodes(ctx, []tlog.NodeID{{Level: 0, Index: index}})
	return err == nil && len(hs) == 1 && hs[0] == leaf
}

func (t *Tenant) setTrust() error {
	b := t.org.TrustBundle()
	cur := t.trust.Load()
	if cur != nil && cur.bundle.Sequence == b.Sequence && cur.roster.Sequence == t.org.Roster().Sequence {
		return nil
	}
	enc, err := b.Marshal()
	if err != nil {
		return err
	}
	// The service checks its own checkpoints with the clients' rules
	// before serving them, except for freshness, which is the clients'.
	vcfg, err := kt.VerifierConfig(b, 100*365*24*time.Hour, 0)
	if err != nil {
		return err
	}
	ti := &trustInfo{bundle: b, enc: enc, vcfg: vcfg, roster: t.org.Roster()}
	switch {
	case cur == nil:
	case cur.bundle.Sequence == b.Sequence:
		// A roster change only.
		ti.from, ti.prev = cur.from, cur.prev
	default:
		// A new bundle, published by the head's epoch: its checkpoint is
		// under the bundle before; the new one applies from the next.
		if h := t.head.Load(); h != nil {
			ti.from = h.LogSize + 1
		}
		old := *cur
		old.prev = nil
		ti.prev = &old
		t.log.Info("trust bundle changed; checkpoints from the next epoch are under it",
			slog.Uint64("sequence", b.Sequence), slog.Uint64("from_size", ti.from), slog.Int("witnesses", len(b.Witnesses.Witnesses)),
			slog.Int("quorum", b.Witnesses.Quorum))
	}
	t.trust.Store(ti)
	return nil
}

// acceptNote makes note the served checkpoint if it is a checkpoint of
// this log's stored tree that a witness quorum cosigned, and newer than
// the one served.
func (t *Tenant) acceptNote(ctx context.Context, note []byte) error {
	all := t.trust.Load()
	cp, err := tlog.OpenCheckpoint(note, all.bundle.LogOrigin, all.bundle.Log)
	if err != nil && all.prev != nil {
		cp, err = tlog.OpenCheckpoint(note, all.prev.bundle.LogOrigin, all.prev.bundle.Log)
	}
	if err != nil {
		return err
	}
	// Verified under the bundle in force for its size, log key included.
	ti := all.checkpointTrust(cp.Size)
	head := t.head.Load()
	if head == nil || cp.Size == 0 || cp.Size > head.LogSize {
		return fmt.Errorf("checkpoint of size %d beyond the stored log", cp.Size)
	}
	root, err := t.tree.Load().Root(ctx, cp.Size)
	if err != nil {
		return err
	}
	if root != cp.Root {
		return errors.New("checkpoint root is not the stored log's")
	}
	v, err := tlog.NewVerifier(ti.vcfg)
	if err != nil {
		return err
	}
	if _, err := v.VerifyCheckpoint(note, nil, t.now()); err != nil {
		return err
	}
	if cur := t.served.Load(); cur != nil && cur.size > cp.Size {
		return fmt.Errorf("older than the served checkpoint of size %d", cur.size)
	}
	entry, err := t.entryAt(ctx, cp.Size-1)
	if err != nil {
		return err
	}
	t.served.Store(&served{size: cp.Size, note: bytes.Clone(note), entry: *entry, at: v.Time()})
	tid := t.id.String()
	t.met.servedSize.WithLabelValues(tid).Set(float64(cp.Size))
	t.met.servedTime.WithLabelValues(tid).Set(float64(v.Time().Unix()))
	return nil
}

// ---------------------------------------------------------------------------
// Publishing

// Epoch is what PublishEpoch did.
type Epoch struct {
	Entry kt.EpochEntry
	// Updates is the number of labels written.
	Updates int
	// Checkpoint is the log-signed checkpoint of the epoch.
	Checkpoint []byte
	// Cosigned reports whether a witness quorum cosigned it, so that it
	// is being served.
	Cosigned bool
	// CosignError is why it is not, if not.
	CosignError error
	// Timings of the commit's phases.
	Timings Timings
}

// Timings are the durations of an epoch commit's phases.
type Timings struct {
	Records time.Duration // labels (VRF, cached), value records, commitments
	Map     time.Duration // vmap.Map.Update
	Log     time.Duration // log append, root and the checkpoint's signature
	Store   time.Duration // the durable store commit
}

// PublishEpoch publishes the next epoch at time now
// (docs/spec/directory.md §Publishing an epoch): the tenant's updates
// become value records, their commitments update the map, the epoch entry
// is appended to the log, the checkpoint is signed, and all of it is
// committed in one durable store transaction. Then the witnesses are asked
// to cosign; the epoch is served once a quorum has. If the commit fails,
// the previous epoch stays served and the tenant's state is what it was
// before, unpublished changes included.
func (t *Tenant) PublishEpoch(ctx context.Context, now time.Time) (*Epoch, error) {
	if t.transitionPending() {
		// The head published a new trust bundle: its checkpoint is
		// cosigned first (errTransitionUncosigned).
		t.cos.round(ctx)
	}
	t.mu.Lock()
	ep, err := t.publish(ctx, now)
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	n, err := t.cos.round(ctx)
	ep.Cosigned = err == nil && n == ep.Entry.Epoch+1
	if !ep.Cosigned && err == nil {
		err = errors.New("service: checkpoint not cosigned by a witness quorum")
	}
	ep.CosignError = err
	return ep, nil
}

// publish is PublishEpoch up to and including the commit. t.mu is held.
func (t *Tenant) publish(ctx context.Context, now time.Time) (*Epoch, error) {
	if t.transitionPending() {
		t.log.Warn("epoch deferred: the witnesses have not cosigned the epoch that published the new trust bundle", slog.Uint64("epoch", t.head.Load().Epoch))
		return nil, errTransitionUncosigned
	}
	start := time.Now()
	now = now.UTC().Truncate(time.Second)
	epoch := uint64(0)
	if h := t.head.Load(); h != nil {
		epoch = h.Epoch + 1
		// Entry times never go back (docs/spec/directory.md §Client
		// verification, step 2), whatever the clock does.
		if now.Before(t.lastEntry.Time) {
			now = t.lastEntry.Time
		}
	}
	// The tenant's state is stored per record (org.PendingRecords): the
	// epoch writes the records that changed, and the same records taken
	// before Publish undo it if the commit fails.
	var before []org.StateRecord
	if t.dirty {
		var err error
		if before, err = t.org.PendingRecords(); err != nil {
			return nil, t.failed(ctx, nil, fmt.Errorf("service: encoding tenant state: %w", err))
		}
	}
	ups, err := t.org.Publish(now)
	if err != nil {
		return nil, t.failed(ctx, before, err)
	}
	if f := t.forge; f != nil {
		t.forge = nil
		if ups, err = f(ups); err != nil {
			return nil, t.failed(ctx, before, err)
		}
	}
	// The changed records are encoded once the values' labels and
	// versions are known: a user's record refers to the certificates
	// that its new value holds (org.ValuesStored) rather than repeating
	// them.
	var state func([]org.ValueRef) ([]store.TenantWrite, error)
	wrote := false
	if t.dirty || len(ups) > 0 {
		state = func(refs []org.ValueRef) ([]store.TenantWrite, error) {
			t.org.ValuesStored(refs)
			recs, err := t.org.PendingRecords()
			if err != nil {
				return nil, fmt.Errorf("service: encoding tenant state: %w", err)
			}
			wrote = len(recs) > 0
			return tenantWrites(t.id, recs), nil
		}
	}
	ep, err := t.commit(ctx, epoch, now, ups, state)
	if err != nil {
		return nil, t.failed(ctx, before, err)
	}
	if wrote {
		t.org.MarkPersisted()
	}
	t.dirty = false
	t.jr.published(epoch)
	prevBundle := t.trust.Load().bundle
	if err := t.setTrust(); err != nil {
		t.log.Error("trust bundle", slog.Any("err", err))
	}
	if nb := t.trust.Load().bundle; prevBundle != nil && (!nb.CA.Equal(prevBundle.CA) || !nb.Log.Equal(prevBundle.Log)) {
		t.keep()
	}
	t.indexUpdates(ups)
	tid := t.id.String()
	t.met.epochs.WithLabelValues(tid).Inc()
	t.met.updates.WithLabelValues(tid).Add(float64(ep.Updates))
	t.met.publishTime.WithLabelValues(tid).Observe(time.Since(start).Seconds())
	t.met.logSize.WithLabelValues(tid).Set(float64(epoch + 1))
	t.log.Info("epoch committed", slog.Uint64("epoch", epoch), slog.Int("updates", ep.Updates),
		slog.Duration("duration", time.Since(start)), slog.Duration("records", ep.Timings.Records),
		slog.Duration("map", ep.Timings.Map), slog.Duration("log", ep.Timings.Log), slog.Duration("store", ep.Timings.Store))
	t.saveLabels(ctx) // the VRF outputs evaluated since the last epoch
	return ep, nil
}

// failed restores the tenant's state from before the epoch (before: its
// pending records taken before Publish; nil if it had none, then from the
// store) and the log tree from the store's head, and returns err.
func (t *Tenant) failed(ctx context.Context, before []org.StateRecord, err error) error {
	t.met.publishFail.WithLabelValues(t.id.String()).Inc()
	t.log.Error("epoch failed; the previous epoch stays served", slog.Any("err", err))
	t.ts.Abort()
	var rerr error
	reloaded := false
	if before != nil {
		if rerr = t.org.RestoreRecords(before); rerr != nil {
			t.log.Error("restoring the tenant state after a failed epoch; reloading it from the store", slog.Any("err", rerr))
			before = nil
		}
	}
	if before == nil && t.head.Load() != nil {
		// The durable state: the published records and the pending ones,
		// once the journal's queued writes are done.
		t.jr.flush()
		var restored *org.Tenant
		if restored, rerr = t.loadOrg(ctx); rerr == nil {
			if _, reloaded, rerr = t.loadPending(ctx, restored); rerr == nil {
				t.org = restored
			}
		}
	}
	if rerr != nil {
		t.log.Error("restoring the tenant state after a failed epoch", slog.Any("err", rerr))
		return errors.Join(err, rerr)
	}
	if before != nil || t.head.Load() != nil {
		t.dirty = before != nil || reloaded // reloaded pending records are written again
	}
	size := uint64(0)
	if h := t.head.Load(); h != nil {
		size = h.LogSize
	}
	tree, terr := tlog.NewTree(ctx, t.ts, size)
	if terr != nil {
		t.log.Error("rebuilding the log tree after a failed epoch", slog.Any("err", terr))
		return errors.Join(err, terr)
	}
	t.tree.Store(tree)
	return err
}

// tenantWrites returns the tenant writes of the state records recs of
// tenant id: none if recs is empty.
func tenantWrites(id org.TenantID, recs []org.StateRecord) []store.TenantWrite {
	if len(recs) == 0 {
		return nil
	}
	tw := store.TenantWrite{ID: id, Records: make([]store.TenantRecord, len(recs))}
	for i, r := range recs {
		tw.Records[i] = store.TenantRecord{Key: store.TenantKey(r.Key), Value: r.Value}
	}
	return []store.TenantWrite{tw}
}

// commit writes ups as epoch at time now, with the tenant writes that
// state returns (nil: none) given where the user values are stored, in
// one EpochCommit.
func (t *Tenant) commit(ctx context.Context, epoch uint64, now time.Time, ups []org.Update,
	state func([]org.ValueRef) ([]store.TenantWrite, error)) (*Epoch, error) {
	var tm Timings
	start := time.Now()
	// The records are independent of each other: build them on every core
	// (VRF outputs not yet cached are evaluated here too), then check that
	// no label is written twice.
	type built struct {
		label vmap.Label
		rec   *kt.ValueRecord
		enc   []byte
		cm    vmap.Commitment
		err   error
	}
	out := make([]built, len(ups))
	t.warmLabels(ctx, ups) // VRF outputs the store holds (after a restart)
	t.parallel(len(ups), func(i int) {
		b := &out[i]
		alpha, err := kt.Alpha(t.id, ups[i].Label)
		if err != nil {
			b.err = err
			return
		}
		b.label = t.publishedLabel(alpha)
		b.rec, b.enc, b.cm, b.err = t.nextRecord(ctx, b.label, epoch, ups[i].Value)
	})
	seen := make(map[vmap.Label]struct{}, len(ups))
	changes := make([]vmap.Change, 0, len(ups))
	values := make([]store.ValueWrite, 0, len(ups)+1)
	heads := make([]recHead, 0, len(ups))
	for i := range out {
		b := &out[i]
		if b.err != nil {
			return nil, b.err
		}
		if _, dup := seen[b.label]; dup {
			return nil, fmt.Errorf("service: label written twice in epoch %d", epoch)
		}
		seen[b.label] = struct{}{}
		changes = append(changes, vmap.Change{Label: b.label, Commitment: b.cm})
		values = append(values, store.ValueWrite{Label: b.label, Version: b.rec.Version, Record: b.enc, Summary: recSummary(epoch, b.cm)})
		heads = append(heads, recHead{version: b.rec.Version, epoch: epoch, commitment: b.cm})
	}
	var tenants []store.TenantWrite
	if state != nil {
		refs := make([]org.ValueRef, 0, len(ups))
		for i, up := range ups {
			if !up.Label.User.IsZero() {
				refs = append(refs, org.ValueRef{User: up.Label.User, Label: out[i].label, Version: out[i].rec.Version})
			}
		}
		var err error
		if tenants, err = state(refs); err != nil {
			return nil, err
		}
	}
	tm.Records = time.Since(start)
	start = time.Now()
	batch, err := t.m.Update(epoch, changes)
	if err != nil {
		return nil, err
	}
	tm.Map = time.Since(start)
	start = time.Now()
	entry := kt.EpochEntry{Epoch: epoch, Time: now, MapRoot: batch.Root}
	leaf, err := entry.Marshal()
	if err != nil {
		return nil, err
	}
	values = append(values, store.ValueWrite{Label: entriesLabel, Version: uint32(epoch + 1), Record: leaf})
	if epoch+1 > uint64(^uint32(0)) {
		return nil, errors.New("service: epoch space of the entry index exhausted")
	}
	// An epoch that publishes a new trust bundle is a transition: the
	// store keeps its checkpoint for good (transitions.go).
	isTransition := epoch > 0 && t.org.TrustBundle().Sequence != t.trust.Load().bundle.Sequence
	c := &store.EpochCommit{Epoch: epoch, Map: batch, Values: values, Tenants: tenants, Transition: isTransition}
	// The checkpoint is signed with the log key of the published bundle;
	// if this epoch publishes a bundle with another log key, the
	// checkpoint announces it (docs/spec/tlog.md §Log key rotation).
	signer, next, err := t.checkpointKeys()
	if err != nil {
		return nil, err
	}
	tree := t.tree.Load()
	t.ts.Begin(c)
	if _, err := tree.Append(ctx, leaf); err != nil {
		return nil, err
	}
	size := tree.Size()
	root, err := tree.Root(ctx, size)
	if err != nil {
		return nil, err
	}
	cp := &tlog.Checkpoint{Origin: t.origin, Size: size, Root: root}
	if next != nil {
		cp.Extensions = []string{tlog.NextLogKeyLine(next)}
	}
	signed, err := tlog.SignCheckpoint(cp, signer)
	if err != nil {
		return nil, err
	}
	c.Head = store.Head{Epoch: epoch, LogSize: size, Checkpoint: signed}
	tm.Log = time.Since(start)
	start = time.Now()
	if err := t.ts.Commit(ctx); err != nil {
		return nil, fmt.Errorf("service: committing epoch %d: %w", epoch, err)
	}
	tm.Store = time.Since(start)
	// Durable and visible: move the caches.
	h := c.Head.Clone()
	t.head.Store(&h)
	t.lastEntry = entry
	if isTransition {
		t.addTransition(size, signed)
	}
	if len(t.lastRec)+len(changes) > t.opts.RecordCache {
		clear(t.lastRec)
	}
	for i, ch := range changes {
		t.lastRec[ch.Label] = heads[i]
	}
	return &Epoch{Entry: entry, Updates: len(changes), Checkpoint: signed, Timings: tm}, nil
}

// nextRecord returns the record that makes value the next version of
// label at epoch (docs/spec/directory.md §Value records, with a derived
// nonce), its encoding and its commitment. It is kt.NextRecord, from the
// previous record's version, epoch and commitment rather than the record.
func (t *Tenant) nextRecord(ctx context.Context, label vmap.Label, epoch uint64, value []byte) (*kt.ValueRecord, []byte, vmap.Commitment, error) {
	prev, err := t.prevRecord(ctx, label)
	if err != nil {
		return nil, nil, vmap.Commitment{}, err
	}
	rec := &kt.ValueRecord{Epoch: epoch, Version: 1, Value: value}
	if prev.version > 0 {
		if prev.epoch >= epoch || prev.version == ^uint32(0) {
			return nil, nil, vmap.Commitment{}, fmt.Errorf("service: %w: label record of epoch %d, version %d before epoch %d",
				store.ErrCorrupt, prev.epoch, prev.version, epoch)
		}
		rec.Version, rec.Prev = prev.version+1, prev.commitment
	}
	if rec.Nonce, err = kt.DeriveNonce(t.keys.Secret, label, rec.Version); err != nil {
		return nil, nil, vmap.Commitment{}, err
	}
	enc, err := rec.Marshal()
	if err != nil {
		return nil, nil, vmap.Commitment{}, err
	}
	cm, err := kt.Commit(label, rec)
	if err != nil {
		return nil, nil, vmap.Commitment{}, err
	}
	return rec, enc, cm, nil
}

// parallel runs f(0) … f(n-1) on GOMAXPROCS goroutines.
func (t *Tenant) parallel(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), (n+255)/256)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				lo := int(next.Add(256)) - 256
				if lo >= n {
					return
				}
				for i := lo; i < min(lo+256, n); i++ {
					f(i)
				}
			}
		})
	}
	wg.Wait()
}

// recSummary is the store summary of a record (store.ValueWrite.Summary):
// its epoch and commitment, what the label's next record needs of it.
func recSummary(epoch uint64, cm vmap.Commitment) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(cm)), epoch), cm[:]...)
}

// prevRecord returns the latest record of label: from the cache of labels
// written, else from the store's summary of it, else from the record.
func (t *Tenant) prevRecord(ctx context.Context, label vmap.Label) (recHead, error) {
	if h, ok := t.lastRec[label]; ok {
		return h, nil
	}
	v, sum, err := t.st.LatestSummary(ctx, label)
	if err != nil || v == 0 {
		return recHead{}, err
	}
	if len(sum) == 8+len(vmap.Commitment{}) {
		return recHead{version: v, epoch: binary.BigEndian.Uint64(sum), commitment: vmap.Commitment(sum[8:])}, nil
	}
	v, enc, err := t.st.LatestValue(ctx, label)
	if err != nil || v == 0 {
		return recHead{}, err
	}
	rec, err := kt.ParseValueRecord(enc)
	if err != nil {
		return recHead{}, fmt.Errorf("service: %w: %v", store.ErrCorrupt, err)
	}
	if rec.Version != v {
		return recHead{}, fmt.Errorf("service: %w: record of version %d stored as version %d", store.ErrCorrupt, rec.Version, v)
	}
	cm, err := kt.Commit(label, rec)
	if err != nil {
		return recHead{}, err
	}
	return recHead{version: v, epoch: rec.Epoch, commitment: cm}, nil
}

// label returns the map label of the VRF input alpha and its VRF proof,
// cached: they never change.
func (t *Tenant) label(alpha []byte) (vmap.Label, []byte) {
	t.vrfMu.Lock()
	o, ok := t.vrfCache[string(alpha)]
	t.vrfMu.Unlock()
	if ok {
		return o.label, o.proof
	}
	var evaluated bool
	if o, evaluated = t.storedOrEvaluated(alpha); evaluated && t.fixedOrgLabel(alpha) {
		t.saveLabel(alpha, o) // vrfcache.go
	}
	return o.label, o.proof
}

// ---------------------------------------------------------------------------
// Reading

// errNotServing is returned before any checkpoint was cosigned.
var errNotServing = errors.New("service: no cosigned checkpoint yet")

// errAhead is returned when the client trusts a larger tree than the one
// served.
type errAhead struct{ served uint64 }

func (e *errAhead) Error() string {
	return fmt.Sprintf("service: client is ahead of the served tree of size %d", e.served)
}

func (t *Tenant) record(ctx context.Context, label vmap.Label, version uint32) (*kt.ValueRecord, error) {
	rs, err := t.st.Values(ctx, label, version, version)
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 {
		return nil, fmt.Errorf("service: %w: %d records for one version", store.ErrCorrupt, len(rs))
	}
	rec, err := kt.ParseValueRecord(rs[0])
	if err != nil {
		return nil, fmt.Errorf("service: %w: %v", store.ErrCorrupt, err)
	}
	return rec, nil
}

// userValueReader returns the reader of the user values that the
// tenant's user records refer to (org.UserRecord): the stored records of
// the label's versions, at the head. The loaded tenant keeps it, so it
// does not end with ctx.
func (t *Tenant) userValueReader(ctx context.Context) org.ValueReader {
	ctx = context.WithoutCancel(ctx)
	return func(label [32]byte, version uint32) ([]byte, error) {
		rec, err := t.record(ctx, vmap.Label(label), version)
		if err != nil {
			return nil, err
		}
		return rec.Value, nil
	}
}

// versionAt returns the latest version of label published at or before
// epoch, 0 if none.
func (t *Tenant) versionAt(ctx context.Context, label vmap.Label, epoch uint64) (uint32, *kt.ValueRecord, error) {
	v, err := t.st.LatestVersion(ctx, label)
	if err != nil {
		return 0, nil, err
	}
	for ; v > 0; v-- {
		rec, err := t.record(ctx, label, v)
		if err != nil {
			return 0, nil, err
		}
		if rec.Epoch <= epoch {
			return v, rec, nil
		}
	}
	return 0, nil, nil
}

func (t *Tenant) entryAt(ctx context.Context, epoch uint64) (*kt.EpochEntry, error) {
	if epoch >= uint64(^uint32(0)) {
		return nil, errors.New("service: epoch out of range")
	}
	rs, err := t.st.Values(ctx, entriesLabel, uint32(epoch+1), uint32(epoch+1))
	if err != nil {
		return nil, fmt.Errorf("service: epoch entry %d: %w", epoch, err)
	}
	e, err := kt.ParseEpochEntry(rs[0])
	if err != nil || e.Epoch != epoch {
		return nil, fmt.Errorf("service: %w: epoch entry %d", store.ErrCorrupt, epoch)
	}
	return e, nil
}

// checkpointUpdate returns the served checkpoint relative to clientSize.
func (t *Tenant) checkpointUpdate(ctx context.Context, sv *served, clientSize uint64) (kt.CheckpointUpdate, error) {
	if clientSize > sv.size {
		return kt.CheckpointUpdate{}, &errAhead{sv.size}
	}
	cu := kt.CheckpointUpdate{BaseSize: clientSize, Note: bytes.Clone(sv.note)}
	if clientSize > 0 && clientSize < sv.size {
		p, err := t.tree.Load().ConsistencyProof(ctx, clientSize, sv.size)
		if err != nil {
			return cu, err
		}
		cu.Consistency = p
	}
	return cu, nil
}

// labelProof returns the proof of alpha's label at the served epoch.
func (t *Tenant) labelProof(ctx context.Context, sv *served, alpha []byte) (kt.LabelProof, vmap.Label, error) {
	epoch := sv.size - 1
	label, pi := t.label(alpha)
	incl, err := t.tree.Load().InclusionProof(ctx, epoch, sv.size)
	if err != nil {
		return kt.LabelProof{}, label, err
	}
	mp, err := t.m.Prove(epoch, label)
	if err != nil {
		return kt.LabelProof{}, label, err
	}
	return kt.LabelProof{Entry: sv.entry, Inclusion: incl, VRFProof: pi, MapProof: mp}, label, nil
}

func (t *Tenant) servedState() (*served, error) {
	sv := t.served.Load()
	if sv == nil {
		return nil, errNotServing
	}
	return sv, nil
}

// Lookup answers a lookup of the org.Label l by a client that trusts a
// tree of size clientSize, at the served epoch.
func (t *Tenant) Lookup(ctx context.Context, l org.Label, clientSize uint64) (*kt.LookupResponse, error) {
	sv, err := t.servedState()
	if err != nil {
		return nil, err
	}
	alpha, err := kt.Alpha(t.id, l)
	if err != nil {
		return nil, err
	}
	cu, err := t.checkpointUpdate(ctx, sv, clientSize)
	if err != nil {
		return nil, err
	}
	p, label, err := t.labelProof(ctx, sv, alpha)
	if err != nil {
		return nil, err
	}
	if err := p.Anchor(&cu); err != nil { // directory.md §Anchored inclusion
		return nil, err
	}
	r := &kt.LookupResponse{Checkpoint: cu, Proof: p}
	if p.MapProof.Kind == vmap.ProofInclusion {
		_, rec, err := t.versionAt(ctx, label, sv.size-1)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			return nil, fmt.Errorf("service: %w: label in the map without a record", store.ErrCorrupt)
		}
		r.Record = rec
		if r.RecordProof, err = t.recordProof(ctx, sv, label, rec); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// History answers a history request for the user label of user since
// version since, at the served epoch.
func (t *Tenant) History(ctx context.Context, user org.UserID, since uint32, clientSize uint64) (*kt.HistoryResponse, error) {
	return t.LabelHistory(ctx, org.Label{User: user}, since, clientSize)
}

// LabelHistory answers a history request for the org.Label l (a user's,
// or an org label) since version since, at the served epoch.
func (t *Tenant) LabelHistory(ctx context.Context, l org.Label, since uint32, clientSize uint64) (*kt.HistoryResponse, error) {
	sv, err := t.servedState()
	if err != nil {
		return nil, err
	}
	alpha, err := kt.Alpha(t.id, l)
	if err != nil {
		return nil, err
	}
	cu, err := t.checkpointUpdate(ctx, sv, clientSize)
	if err != nil {
		return nil, err
	}
	p, label, err := t.labelProof(ctx, sv, alpha)
	if err != nil {
		return nil, err
	}
	if err := p.Anchor(&cu); err != nil { // directory.md §Anchored inclusion
		return nil, err
	}
	v, _, err := t.versionAt(ctx, label, sv.size-1)
	if err != nil {
		return nil, err
	}
	if since > v {
		return nil, &errSince{latest: v}
	}
	r := &kt.HistoryResponse{Checkpoint: cu, Proof: p, Since: since}
	if since < v {
		rs, err := t.st.Values(ctx, label, since+1, v)
		if err != nil {
			return nil, err
		}
		for _, b := range rs {
			rec, err := kt.ParseValueRecord(b)
			if err != nil {
				return nil, fmt.Errorf("service: %w: %v", store.ErrCorrupt, err)
			}
			r.Records = append(r.Records, rec)
		}
		if r.RecordProof, err = t.recordProof(ctx, sv, label, r.Records[len(r.Records)-1]); err != nil {
			return nil, err
		}
	}
	return r, nil
}

type errSince struct{ latest uint32 }

func (e *errSince) Error() string {
	return fmt.Sprintf("service: history since a version after the latest, %d", e.latest)
}

// Consistency answers a checkpoint request of a client at clientSize.
func (t *Tenant) Consistency(ctx context.Context, clientSize uint64) (*kt.ConsistencyResponse, error) {
	sv, err := t.servedState()
	if err != nil {
		return nil, err
	}
	cu, err := t.checkpointUpdate(ctx, sv, clientSize)
	if err != nil {
		return nil, err
	}
	r := &kt.ConsistencyResponse{Checkpoint: cu}
	if len(cu.Note) > 0 { // the last entry, for the client to hold (directory.md §Held entry)
		incl, err := t.tree.Load().InclusionProof(ctx, sv.size-1, sv.size)
		if err != nil {
			return nil, err
		}
		r.Last = &kt.LastEntry{Entry: sv.entry, Inclusion: incl}
		if err := r.Last.Anchor(&cu); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// ---------------------------------------------------------------------------
// Devices that may sign read requests

// indexUpdates refreshes the device index for the users ups changed.
// t.mu is held.
func (t *Tenant) indexUpdates(ups []org.Update) {
	for _, up := range ups {
		if !up.Label.User.IsZero() {
			t.indexUser(up.Label.User)
		}
	}
}

func (t *Tenant) indexUser(uid org.UserID) {
	v, err := t.org.UserValue(uid)
	t.devMu.Lock()
	defer t.devMu.Unlock()
	for _, d := range t.byUser[uid] {
		delete(t.devices, d)
	}
	delete(t.byUser, uid)
	if err != nil {
		return
	}
	var ids []org.DeviceID
	for _, c := range v.Certificates {
		t.devices[c.Device] = authDevice{user: uid, key: c.Identity.Signing, identity: c.Identity, serial: c.Serial,
			notBefore: c.NotBefore, notAfter: c.NotAfter}
		ids = append(ids, c.Device)
	}
	if len(ids) > 0 {
		t.byUser[uid] = ids
	}
}

// indexAllDevices builds the device index from the published org chart.
func (t *Tenant) indexAllDevices(ctx context.Context) error {
	chart, err := t.orgChart(ctx)
	if err != nil || chart == nil {
		return err
	}
	for _, m := range chart.Members {
		t.indexUser(m.User)
	}
	return nil
}

// orgChart returns the latest published org chart, or nil.
func (t *Tenant) orgChart(ctx context.Context) (*org.OrgChart, error) {
	alpha, err := kt.OrgAlpha(t.id, org.OrgLabelOrgChart)
	if err != nil {
		return nil, err
	}
	label, _ := t.label(alpha)
	v, err := t.st.LatestVersion(ctx, label)
	if err != nil || v == 0 {
		return nil, err
	}
	rec, err := t.record(ctx, label, v)
	if err != nil {
		return nil, err
	}
	return org.ParseOrgChart(rec.Value)
}

func (t *Tenant) revokeIndexed(dev org.DeviceID) {
	t.devMu.Lock()
	defer t.devMu.Unlock()
	d, ok := t.devices[dev]
	if !ok {
		return
	}
	delete(t.devices, dev)
	ids := t.byUser[d.user]
	for i, id := range ids {
		if id == dev {
			t.byUser[d.user] = append(ids[:i:i], ids[i+1:]...)
			break
		}
	}
}

func (t *Tenant) device(dev org.DeviceID, now time.Time) (authDevice, bool) {
	t.devMu.RLock()
	d, ok := t.devices[dev]
	t.devMu.RUnlock()
	if !ok || now.Before(d.notBefore) || !now.Before(d.notAfter) {
		return authDevice{}, false
	}
	return d, true
}

// ActiveDevice is a device of the tenant with a current certificate.
type ActiveDevice struct {
	User     org.UserID
	Identity keys.DeviceIdentity
	Serial   uint64
	NotAfter time.Time
}

// Device returns the device dev of the tenant if it has a certificate
// valid at now that is not revoked: the devices that may sign requests to
// the directory, and that a relay in the same process accepts
// (server/relay DeviceDirectory). An enrolment or a revocation takes
// effect here at once, before the epoch that publishes it.
func (t *Tenant) Device(dev org.DeviceID, now time.Time) (ActiveDevice, bool) {
	d, ok := t.device(dev, now)
	if !ok {
		return ActiveDevice{}, false
	}
	return ActiveDevice{User: d.user, Identity: d.identity, Serial: d.serial, NotAfter: d.notAfter}, true
}

// Kick asks for an epoch as soon as possible (a running Service publishes
// it).
func (t *Tenant) Kick() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// EpochEntry returns the entry of a committed epoch.
func (t *Tenant) EpochEntry(ctx context.Context, epoch uint64) (*kt.EpochEntry, error) {
	if h := t.head.Load(); h == nil || epoch > h.Epoch {
		return nil, fmt.Errorf("service: epoch %d not committed", epoch)
	}
	return t.entryAt(ctx, epoch)
}

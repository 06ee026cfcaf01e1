// Package kttest is an in-memory key directory for tests: one tenant's
// admin state machine (keyserver/org), a VRF key, a verifiable map
// (keyserver/vmap) on a MemStore, a transparency log (crypto/tlog) on a
// MemoryNodeStore with its log key, and witnesses with in-memory stores,
// wired together as docs/spec/directory.md §Publishing an epoch specifies.
//
// It is also the reference for a directory service: PublishEpoch is the
// epoch commit (in a service, the map batch, the log leaves, the records
// and the tenant state go into one durable transaction), and Lookup,
// History and Consistency build the responses a service serves.
package kttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/crypto/vrf"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// T0 is the default creation time of a Directory.
var T0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// Options configures a Directory. The zero value gives the defaults.
type Options struct {
	// Tenant is the tenant id. Default {0x7e, 0x01}.
	Tenant org.TenantID
	// Seed seeds every key and random value, so that directories are
	// reproducible (ML-DSA signatures, which are hedged, aside).
	Seed uint64
	// Now is the creation time. Default T0.
	Now time.Time
	// Witnesses is the number of witnesses, Quorum the client quorum.
	// Defaults 3 and 2.
	Witnesses, Quorum int
	// Ed25519Witnesses gives witnesses only an Ed25519 key; by default
	// each has an Ed25519 and an ML-DSA-44 key, and clients require both.
	Ed25519Witnesses bool
	// Admins is the number of admins, Threshold the dual-control M.
	// Defaults 3 and 2.
	Admins, Threshold int
	// Origin is the log origin. Default "moat.example/directory/<tenant>".
	Origin string
}

// Directory is an in-memory key directory for one tenant. Its fields are
// exported so that tests can act as the tenant's admins, or as a
// malicious operator holding every key. It is not safe for concurrent use.
type Directory struct {
	Tenant *org.Tenant
	CA     *org.MemorySigner
	Admins []*org.AdminPrivateKey
	VRF    *vrf.PrivateKey
	LogKey *keys.LogPrivateKey
	Origin string
	// WitnessKeys[i] are the keys of Witnesses[i].
	Witnesses   []*tlog.Witness
	WitnessKeys [][]*tlog.WitnessPrivateKey
	Map         *vmap.Map
	Tree        *tlog.Tree
	Rand        io.Reader
	// OmitUnchangedCheckpoint makes responses carry an empty note when
	// the client already trusts the latest checkpoint.
	OmitUnchangedCheckpoint bool

	secret    []byte
	store     *vmap.MemStore
	records   map[vmap.Label][]*kt.ValueRecord
	vrfCache  map[string]vrfOutput
	entries   []kt.EpochEntry
	signed    []byte   // the latest checkpoint, signed by the log
	note      []byte   // the same with the witnesses' cosignatures
	cosigned  []uint64 // per witness, the size it last cosigned
	inject    []org.Update
	injectRec map[vmap.Label]*kt.ValueRecord
	// A new log key or witness set, used from the epoch after the one
	// that publishes the trust bundle naming it.
	pendingLog       *keys.LogPrivateKey
	pendingWitnesses [][]*tlog.WitnessPrivateKey
	// transitions are the epochs that published a trust bundle, with
	// their cosigned checkpoints (rotate.go).
	transitions []transition
}

type vrfOutput struct {
	label vmap.Label
	proof []byte
}

// New returns a directory with a new tenant, no users, and no epoch
// published yet.
func New(opts Options) (*Directory, error) {
	if opts.Tenant.IsZero() {
		opts.Tenant = org.TenantID{0x7e, 0x01}
	}
	if opts.Now.IsZero() {
		opts.Now = T0
	}
	if opts.Witnesses == 0 {
		opts.Witnesses, opts.Quorum = 3, 2
	}
	if opts.Quorum == 0 {
		opts.Quorum = opts.Witnesses/2 + 1
	}
	if opts.Admins == 0 {
		opts.Admins, opts.Threshold = 3, 2
	}
	if opts.Threshold == 0 {
		opts.Threshold = 2
	}
	if opts.Origin == "" {
		opts.Origin = fmt.Sprintf("moat.example/directory/%x", opts.Tenant[:])
	}
	var seed [32]byte
	binary.BigEndian.PutUint64(seed[:], opts.Seed)
	copy(seed[8:], "moat kttest directory")
	rnd := rand.NewChaCha8(seed)

	d := &Directory{
		Origin: opts.Origin, Rand: rnd, store: vmap.NewMemStore(),
		records: map[vmap.Label][]*kt.ValueRecord{}, vrfCache: map[string]vrfOutput{},
		secret: make([]byte, kt.MinSecretSize),
	}
	var err error
	rnd.Read(d.secret)
	if d.CA, err = org.GenerateMemorySigner(rnd); err != nil {
		return nil, err
	}
	if d.VRF, err = vrf.GenerateKey(rnd); err != nil {
		return nil, err
	}
	if d.LogKey, err = keys.GenerateLogKey(rnd); err != nil {
		return nil, err
	}
	var admins []*org.AdminKey
	for i := range opts.Admins {
		scheme := org.AdminHybrid
		if i%2 == 1 {
			scheme = org.AdminEd25519
		}
		k, err := org.GenerateAdminKey(rnd, org.AdminID{0xad, byte(i + 1)}, scheme)
		if err != nil {
			return nil, err
		}
		d.Admins = append(d.Admins, k)
		admins = append(admins, k.Public())
	}
	ws := org.WitnessSet{Quorum: opts.Quorum}
	for i := range opts.Witnesses {
		name := fmt.Sprintf("witness%d.example/w", i+1)
		ed, err := tlog.GenerateWitnessKey(rnd, name, tlog.CosignatureEd25519)
		if err != nil {
			return nil, err
		}
		wk := org.WitnessKey{Name: name, Ed25519: ed.Public().Bytes()}
		ks := []*tlog.WitnessPrivateKey{ed}
		if !opts.Ed25519Witnesses {
			pq, err := tlog.GenerateWitnessKey(rnd, name, tlog.CosignatureMLDSA44)
			if err != nil {
				return nil, err
			}
			wk.MLDSA44 = pq.Public().Bytes()
			ks = append(ks, pq)
		}
		w, err := tlog.NewWitness(tlog.WitnessConfig{
			Keys: ks, Logs: map[string]*keys.LogPublicKey{d.Origin: d.LogKey.Public()}, Store: tlog.NewMemoryWitnessStore(),
		})
		if err != nil {
			return nil, err
		}
		d.Witnesses = append(d.Witnesses, w)
		d.WitnessKeys = append(d.WitnessKeys, ks)
		ws.Witnesses = append(ws.Witnesses, wk)
	}
	d.cosigned = make([]uint64, len(d.Witnesses))
	d.Tenant, err = org.NewTenant(org.TenantParams{
		ID: opts.Tenant, Admins: admins, Threshold: opts.Threshold,
		LogOrigin: d.Origin, Log: d.LogKey.Public(), VRF: d.VRF.Public(), Witnesses: ws,
	}, d.CA, opts.Now)
	if err != nil {
		return nil, err
	}
	d.Map = vmap.New(d.store, nil)
	if d.Tree, err = tlog.NewTree(context.Background(), tlog.NewMemoryNodeStore(), 0); err != nil {
		return nil, err
	}
	return d, nil
}

// TrustBundle returns the tenant's current trust bundle, which a device
// gets at enrolment.
func (d *Directory) TrustBundle() *org.TrustBundle { return d.Tenant.TrustBundle() }

// Config returns a client configuration for the tenant's trust bundle.
func (d *Directory) Config(maxAge time.Duration) kt.Config {
	return kt.Config{Bundle: d.TrustBundle(), MaxAge: maxAge}
}

// NewClient returns a new client of the directory with MaxAge maxAge.
func (d *Directory) NewClient(maxAge time.Duration) (*kt.Client, error) {
	return kt.NewClient(d.Config(maxAge))
}

// Epoch is what PublishEpoch published.
type Epoch struct {
	Entry kt.EpochEntry
	// Note is the checkpoint, signed by the log and cosigned by every
	// witness.
	Note []byte
	// Updates are the values written, injected ones included.
	Updates []org.Update
}

// Inject queues a value for label at the next epoch, as a malicious
// operator would: it does not come from the tenant's state machine, and
// replaces any value the tenant publishes for the same label.
func (d *Directory) Inject(label org.Label, value []byte) {
	d.inject = append(d.inject, org.Update{Label: label, Value: bytes.Clone(value)})
}

// InjectRecord queues rec as label's record at the next epoch, as is: a
// malicious operator that breaks the label's hash chain (for instance by
// serving an old record again).
func (d *Directory) InjectRecord(label org.Label, rec *kt.ValueRecord) error {
	l, _, err := d.label(label)
	if err != nil {
		return err
	}
	if d.injectRec == nil {
		d.injectRec = map[vmap.Label]*kt.ValueRecord{}
	}
	d.injectRec[l] = rec
	return nil
}

// PublishEpoch publishes the next epoch at time now
// (docs/spec/directory.md §Publishing an epoch): the tenant's updates
// (org.Tenant.Publish) and any injected values become the labels' next
// value records; their commitments update the map; the epoch entry with
// the new map root is appended to the log; the log signs the checkpoint
// and every witness cosigns it.
func (d *Directory) PublishEpoch(now time.Time) (*Epoch, error) {
	ctx := context.Background()
	now = now.Truncate(time.Second)
	epoch := uint64(len(d.entries))
	ups, err := d.Tenant.Publish(now)
	if err != nil {
		return nil, err
	}
	ups = append(ups, d.inject...)
	// One value per label: an injected value replaces the tenant's.
	byLabel := map[vmap.Label]int{}
	var changes []vmap.Change
	var recs []*kt.ValueRecord
	var labels []vmap.Label
	for _, up := range ups {
		label, _, err := d.label(up.Label)
		if err != nil {
			return nil, err
		}
		prev := d.latest(label)
		rec, cm, err := kt.NextRecord(d.secret, label, epoch, prev, up.Value)
		if err != nil {
			return nil, err
		}
		if i, ok := byLabel[label]; ok {
			changes[i].Commitment, recs[i] = cm, rec
			continue
		}
		byLabel[label] = len(changes)
		changes = append(changes, vmap.Change{Label: label, Commitment: cm})
		recs = append(recs, rec)
		labels = append(labels, label)
	}
	for l, rec := range d.injectRec {
		cm, err := kt.Commit(l, rec)
		if err != nil {
			return nil, err
		}
		if i, ok := byLabel[l]; ok {
			changes[i].Commitment, recs[i] = cm, rec
			continue
		}
		byLabel[l] = len(changes)
		changes = append(changes, vmap.Change{Label: l, Commitment: cm})
		recs = append(recs, rec)
		labels = append(labels, l)
	}
	batch, err := d.Map.Update(epoch, changes)
	if err != nil {
		return nil, err
	}
	entry := kt.EpochEntry{Epoch: epoch, Time: now.UTC(), MapRoot: batch.Root}
	leaf, err := entry.Marshal()
	if err != nil {
		return nil, err
	}
	// In a service, everything from here to the end of the commit is one
	// durable transaction: the map batch, the log leaf, the records and
	// the tenant's state.
	if err := d.store.Commit(batch); err != nil {
		return nil, err
	}
	if _, err := d.Tree.Append(ctx, leaf); err != nil {
		return nil, err
	}
	for i, l := range labels {
		d.records[l] = append(d.records[l], recs[i])
	}
	d.entries = append(d.entries, entry)
	d.inject, d.injectRec = nil, nil

	root, err := d.Tree.Root(ctx, d.Tree.Size())
	if err != nil {
		return nil, err
	}
	cp := &tlog.Checkpoint{Origin: d.Origin, Size: d.Tree.Size(), Root: root}
	if d.pendingLog != nil {
		cp.Extensions = []string{tlog.NextLogKeyLine(d.pendingLog.Public())}
	}
	d.signed, err = tlog.SignCheckpoint(cp, d.LogKey)
	if err != nil {
		return nil, err
	}
	d.note = d.signed
	if err := d.cosign(now); err != nil {
		return nil, err
	}
	for _, up := range ups {
		if up.Label.Org == org.OrgLabelTrustBundle && epoch > 0 {
			d.transitions = append(d.transitions, transition{epoch: epoch, note: bytes.Clone(d.note)})
			break
		}
	}
	if err := d.switchKeys(); err != nil {
		return nil, err
	}
	return &Epoch{Entry: entry, Note: bytes.Clone(d.note), Updates: ups}, nil
}

// PublishQuietEpochs publishes n epochs in which nothing changes, all at
// time now, and signs and cosigns only the last one's checkpoint, as a
// fast way for tests to grow the log (a directory serves only its latest
// checkpoint anyway). The tenant must have nothing to publish.
func (d *Directory) PublishQuietEpochs(n int, now time.Time) error {
	ctx := context.Background()
	now = now.Truncate(time.Second)
	if len(d.inject) > 0 || len(d.injectRec) > 0 || d.pendingLog != nil || d.pendingWitnesses != nil {
		return errors.New("kttest: quiet epochs with injected values or keys to switch")
	}
	for range n {
		ups, err := d.Tenant.Publish(now)
		if err != nil {
			return err
		}
		if len(ups) > 0 {
			return errors.New("kttest: quiet epochs with tenant updates")
		}
		epoch := uint64(len(d.entries))
		batch, err := d.Map.Update(epoch, nil)
		if err != nil {
			return err
		}
		entry := kt.EpochEntry{Epoch: epoch, Time: now.UTC(), MapRoot: batch.Root}
		leaf, err := entry.Marshal()
		if err != nil {
			return err
		}
		if err := d.store.Commit(batch); err != nil {
			return err
		}
		if _, err := d.Tree.Append(ctx, leaf); err != nil {
			return err
		}
		d.entries = append(d.entries, entry)
	}
	root, err := d.Tree.Root(ctx, d.Tree.Size())
	if err != nil {
		return err
	}
	cp := &tlog.Checkpoint{Origin: d.Origin, Size: d.Tree.Size(), Root: root}
	if d.signed, err = tlog.SignCheckpoint(cp, d.LogKey); err != nil {
		return err
	}
	d.note = d.signed
	return d.cosign(now)
}

// Cosign has every witness cosign the latest checkpoint again at time now,
// as a log must more often than clients' MaxAge even when it does not grow.
func (d *Directory) Cosign(now time.Time) error {
	if d.signed == nil {
		return errors.New("kttest: no checkpoint yet")
	}
	d.note = d.signed
	if err := d.cosign(now); err != nil {
		return err
	}
	if n := len(d.transitions); n > 0 && d.transitions[n-1].epoch == d.Tree.Size()-1 {
		d.transitions[n-1].note = bytes.Clone(d.note)
	}
	return nil
}

func (d *Directory) cosign(now time.Time) error {
	ctx := context.Background()
	size := d.Tree.Size()
	for i, w := range d.Witnesses {
		proof, err := d.Tree.ConsistencyProof(ctx, d.cosigned[i], size)
		if err != nil {
			return err
		}
		body, err := w.AddCheckpoint(ctx, &tlog.AddCheckpointRequest{OldSize: d.cosigned[i], Proof: proof, Checkpoint: d.signed}, now)
		if err != nil {
			return fmt.Errorf("kttest: witness %d: %w", i, err)
		}
		if d.note, err = tlog.AddCosignatures(d.note, body); err != nil {
			return err
		}
		d.cosigned[i] = size
	}
	return nil
}

// Size returns the log's size: the number of epochs published.
func (d *Directory) Size() uint64 { return d.Tree.Size() }

// Note returns the latest cosigned checkpoint note.
func (d *Directory) Note() []byte { return bytes.Clone(d.note) }

// Records returns every value record of label, oldest first.
func (d *Directory) Records(l org.Label) ([]*kt.ValueRecord, error) {
	label, _, err := d.label(l)
	if err != nil {
		return nil, err
	}
	return d.records[label], nil
}

// label returns the map label of l and its VRF proof, cached.
func (d *Directory) label(l org.Label) (vmap.Label, []byte, error) {
	alpha, err := kt.Alpha(d.Tenant.ID(), l)
	if err != nil {
		return vmap.Label{}, nil, err
	}
	if o, ok := d.vrfCache[string(alpha)]; ok {
		return o.label, o.proof, nil
	}
	label, proof := kt.EvaluateLabel(d.VRF, alpha)
	d.vrfCache[string(alpha)] = vrfOutput{label, proof}
	return label, proof, nil
}

func (d *Directory) latest(label vmap.Label) *kt.ValueRecord {
	if rs := d.records[label]; len(rs) > 0 {
		return rs[len(rs)-1]
	}
	return nil
}

// checkpointUpdate returns the latest checkpoint relative to clientSize.
func (d *Directory) checkpointUpdate(clientSize uint64) (kt.CheckpointUpdate, error) {
	size := d.Tree.Size()
	if clientSize > size {
		return kt.CheckpointUpdate{}, fmt.Errorf("kttest: client at size %d, log at %d", clientSize, size)
	}
	cu := kt.CheckpointUpdate{BaseSize: clientSize, Note: bytes.Clone(d.note)}
	if clientSize == size && d.OmitUnchangedCheckpoint {
		cu.Note = nil
		return cu, nil
	}
	p, err := d.Tree.ConsistencyProof(context.Background(), clientSize, size)
	if err != nil {
		return cu, err
	}
	if len(p) > 0 {
		cu.Consistency = p
	}
	return cu, nil
}

// labelProof returns the proof of l at the latest epoch.
func (d *Directory) labelProof(l org.Label) (kt.LabelProof, vmap.Label, error) {
	size := d.Tree.Size()
	if size == 0 {
		return kt.LabelProof{}, vmap.Label{}, errors.New("kttest: no epoch published")
	}
	return d.labelProofAt(l, size-1)
}

// labelProofAt returns the proof of l at epoch, against the checkpoint of
// size epoch + 1.
func (d *Directory) labelProofAt(l org.Label, epoch uint64) (kt.LabelProof, vmap.Label, error) {
	size := epoch + 1
	label, pi, err := d.label(l)
	if err != nil {
		return kt.LabelProof{}, label, err
	}
	incl, err := d.Tree.InclusionProof(context.Background(), epoch, size)
	if err != nil {
		return kt.LabelProof{}, label, err
	}
	mp, err := d.Map.Prove(epoch, label)
	if err != nil {
		return kt.LabelProof{}, label, err
	}
	return kt.LabelProof{Entry: d.entries[epoch], Inclusion: incl, VRFProof: pi, MapProof: mp}, label, nil
}

func (d *Directory) lookup(l org.Label, clientSize uint64) (*kt.LookupResponse, error) {
	cu, err := d.checkpointUpdate(clientSize)
	if err != nil {
		return nil, err
	}
	p, label, err := d.labelProof(l)
	if err != nil {
		return nil, err
	}
	if err := p.Anchor(&cu); err != nil {
		return nil, err
	}
	r := &kt.LookupResponse{Checkpoint: cu, Proof: p, Record: d.latest(label)}
	if r.RecordProof, err = d.recordProof(label, r.Record); err != nil {
		return nil, err
	}
	return r, nil
}

// recordProof returns the record proof of rec, label's record at the
// latest epoch (docs/spec/directory.md §Proof bundles): its proof at
// rec.Epoch, if that is before the latest CA rotation, else nil.
func (d *Directory) recordProof(label vmap.Label, rec *kt.ValueRecord) (*kt.EpochProof, error) {
	if rec == nil {
		return nil, nil
	}
	rl, _, err := d.label(org.Label{Org: org.OrgLabelCARotation})
	if err != nil {
		return nil, err
	}
	rot := d.latest(rl)
	if rot == nil || rec.Epoch >= rot.Epoch {
		return nil, nil
	}
	return d.EpochProof(label, rec.Epoch)
}

// EpochProof returns the proof of label at epoch in the tree of the
// latest checkpoint.
func (d *Directory) EpochProof(label vmap.Label, epoch uint64) (*kt.EpochProof, error) {
	size := d.Tree.Size()
	if epoch >= size {
		return nil, fmt.Errorf("kttest: epoch %d of %d", epoch, size)
	}
	incl, err := d.Tree.InclusionProof(context.Background(), epoch, size)
	if err != nil {
		return nil, err
	}
	mp, err := d.Map.Prove(epoch, label)
	if err != nil {
		return nil, err
	}
	return &kt.EpochProof{Entry: d.entries[epoch], Inclusion: incl, MapProof: mp}, nil
}

// Lookup answers a lookup of user by a client that trusts a tree of size
// clientSize (kt.Client.TreeSize), at the latest epoch.
func (d *Directory) Lookup(user org.UserID, clientSize uint64) (*kt.LookupResponse, error) {
	return d.lookup(org.Label{User: user}, clientSize)
}

// LookupOrg answers a lookup of the org label name.
func (d *Directory) LookupOrg(name string, clientSize uint64) (*kt.LookupResponse, error) {
	return d.lookup(org.Label{Org: name}, clientSize)
}

// History answers a history request for user since version since.
func (d *Directory) History(user org.UserID, since uint32, clientSize uint64) (*kt.HistoryResponse, error) {
	return d.history(org.Label{User: user}, since, clientSize)
}

// HistoryOrg answers a history request for the org label name since
// version since.
func (d *Directory) HistoryOrg(name string, since uint32, clientSize uint64) (*kt.HistoryResponse, error) {
	return d.history(org.Label{Org: name}, since, clientSize)
}

func (d *Directory) history(l org.Label, since uint32, clientSize uint64) (*kt.HistoryResponse, error) {
	cu, err := d.checkpointUpdate(clientSize)
	if err != nil {
		return nil, err
	}
	p, label, err := d.labelProof(l)
	if err != nil {
		return nil, err
	}
	if err := p.Anchor(&cu); err != nil {
		return nil, err
	}
	rs := d.records[label]
	if uint64(since) > uint64(len(rs)) {
		return nil, fmt.Errorf("kttest: history since version %d of %d", since, len(rs))
	}
	r := &kt.HistoryResponse{Checkpoint: cu, Proof: p, Since: since, Records: rs[since:]}
	if len(r.Records) > 0 {
		if r.RecordProof, err = d.recordProof(label, r.Records[len(r.Records)-1]); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Monitor answers a monitoring step of device for user, since version
// since, from epoch start, by a client that trusts a tree of size
// clientSize (docs/spec/directory.md §Per-epoch monitoring): the map
// proofs of the page of epochs from start, the records they show, and the
// range proof of their entries. At a first step (since 0) the directory
// chooses start: the epoch of the first record that adds device
// (kt.BaselineEpoch), or the latest epoch.
func (d *Directory) Monitor(user org.UserID, device org.DeviceID, since uint32, start, clientSize uint64) (*kt.MonitorResponse, error) {
	ctx := context.Background()
	cu, err := d.checkpointUpdate(clientSize)
	if err != nil {
		return nil, err
	}
	label, pi, err := d.label(org.Label{User: user})
	if err != nil {
		return nil, err
	}
	n := d.Tree.Size()
	rs := d.records[label]
	if uint64(since) > uint64(len(rs)) {
		return nil, fmt.Errorf("kttest: monitoring since version %d of %d", since, len(rs))
	}
	if since == 0 {
		var ok bool
		if start, ok = kt.BaselineEpoch(rs, device); !ok && n > 0 {
			start = n - 1
		}
	}
	if start > n {
		return nil, fmt.Errorf("kttest: monitoring from epoch %d of %d", start, n)
	}
	r := &kt.MonitorResponse{Checkpoint: cu, VRFProof: pi, Since: since, Start: start}
	end := min(start+kt.MaxMonitorEpochs, n)
	if end == start {
		return r, nil
	}
	for e := start; e < end; e++ {
		mp, err := d.Map.Prove(e, label)
		if err != nil {
			return nil, err
		}
		r.Epochs = append(r.Epochs, kt.MonitoredEpoch{Time: d.entries[e].Time, MapProof: mp})
	}
	if r.RangeProof, err = d.Tree.RangeProof(ctx, start, end, n); err != nil {
		return nil, err
	}
	// The records up to the one the map holds at the page's last epoch.
	cm, present, err := d.Map.Lookup(end-1, label)
	if err != nil {
		return nil, err
	}
	for _, rec := range rs[since:] {
		if !present {
			break
		}
		r.Records = append(r.Records, rec)
		if c, err := kt.Commit(label, rec); err == nil && c == cm {
			break
		}
	}
	return r, nil
}

// Consistency answers a checkpoint request by a client at clientSize.
func (d *Directory) Consistency(clientSize uint64) (*kt.ConsistencyResponse, error) {
	cu, err := d.checkpointUpdate(clientSize)
	if err != nil {
		return nil, err
	}
	r := &kt.ConsistencyResponse{Checkpoint: cu}
	if size := d.Tree.Size(); len(cu.Note) > 0 && size > 0 {
		// The last entry, held by the client from then on
		// (directory.md §Held entry).
		incl, err := d.Tree.InclusionProof(context.Background(), size-1, size)
		if err != nil {
			return nil, err
		}
		r.Last = &kt.LastEntry{Entry: d.entries[size-1], Inclusion: incl}
		if err := r.Last.Anchor(&cu); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// LookupHeld answers a lookup of user by a client that trusts a tree of
// size clientSize and holds the entry of epoch held as its last leaf
// (kt.Client.HeldEntry): as Lookup, with the entry's inclusion proof left
// out if the latest checkpoint is still of size clientSize and held is
// its last epoch (docs/spec/directory.md §Held entry).
func (d *Directory) LookupHeld(user org.UserID, clientSize, held uint64) (*kt.LookupResponse, error) {
	r, err := d.lookup(org.Label{User: user}, clientSize)
	if err != nil {
		return nil, err
	}
	if clientSize > 0 && held == clientSize-1 && r.Proof.Entry.Epoch == held {
		r.Proof.Inclusion = nil
	}
	return r, nil
}

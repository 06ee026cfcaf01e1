package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/internal/scriptcmds"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/keyserver/vmap"
	"github.com/rogpeppe/go-internal/testscript"
)

// The split-view attack of T27, played by a directory operator who holds
// the tenant's data directory (its keys and its store), against real
// moat-witness processes and the script's devices.

// logView is one view of the tenant's log that the operator shows: the
// tree, its checkpoint note signed with the log key (what it sends to
// witnesses), and that note with the cosignatures witnesses gave it (what
// it serves to clients).
type logView struct {
	tree     *tlog.Tree
	size     uint64
	root     tlog.Hash
	signed   []byte
	cosigned []byte
}

// entriesLabel is where the service keeps the log's epoch entries: the
// version e+1 of this store label is the EpochEntry of epoch e
// (docs/spec/directory-api.md §Tenants, logs and stores).
var entriesLabel = vmap.Label(sha256.Sum256([]byte("moat/v1/directory-service/epoch-entries")))

// splitview fork DATADIR TENANT
//
//	With the directory stopped (the store is locked while it runs), reads
//	the tenant's keys and log from DATADIR and makes two views of the
//	head's size: "real", the log as committed (checked against the
//	head's checkpoint), and "fork", the same but for a forged last epoch
//	entry. Both checkpoints are signed with the tenant's log key. Sets
//	$SIZE to the head's size and $PREV to the size before it.
//
// splitview post ADDRFILE VIEW OLD
//
//	Sends VIEW's checkpoint to the witness at the address in ADDRFILE
//	(C2SP tlog-witness add-checkpoint, old size OLD with the consistency
//	proof from it), as the directory would; prints "status 200" and keeps
//	the cosignature, "status 409 size N", or "status CODE" and the
//	witness's message.
//
// splitview holds ADDRFILE VIEW
//
//	The witness's latest cosigned checkpoint (its monitoring endpoint) is
//	VIEW's.
//
// splitview check VIEW [EVIDENCEFILE]
//
//	The script's device is served VIEW's cosigned checkpoint, with the
//	consistency proof from its tree size in VIEW's tree
//	(kt.Client.UpdateCheckpoint). Prints "accepted size N", or the error;
//	a refusal other than a fork must leave the device's state
//	byte-identical; a fork must be proven (two log-signed checkpoints of
//	the same size, different roots) and kept by the device across a
//	restore; its evidence, both notes, is written to EVIDENCEFILE.
func cmdSplitView(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: splitview fork|post|holds|check ...")
	}
	st := state(ts)
	ctx := context.Background()
	switch {
	case args[0] == "fork" && len(args) == 3 && !neg:
		st.views = splitViews(ts, ts.MkAbs(args[1]), args[2])
		r, f := st.views["real"], st.views["fork"]
		ts.Setenv("SIZE", strconv.FormatUint(r.size, 10))
		ts.Setenv("PREV", strconv.FormatUint(r.size-1, 10))
		fmt.Fprintf(ts.Stdout(), "size %d\nreal %x\nfork %x\n", r.size, r.root[:], f.root[:])
	case args[0] == "post" && len(args) == 4 && !neg:
		v := view(ts, args[2])
		old, err := strconv.ParseUint(args[3], 10, 64)
		ts.Check(err)
		var proof []tlog.Hash
		if old > 0 && old < v.size {
			proof, err = v.tree.ConsistencyProof(ctx, old, v.size)
			ts.Check(err)
		}
		wc, err := service.NewHTTPWitness(scriptcmds.Addr(ts, args[1]), nil)
		ts.Check(err)
		lines, err := wc.AddCheckpoint(ctx, &tlog.AddCheckpointRequest{OldSize: old, Proof: proof, Checkpoint: v.signed})
		ce, isConflict := errors.AsType[*tlog.ConflictError](err)
		we, isRefusal := errors.AsType[*service.WitnessError](err)
		switch {
		case err == nil:
			v.cosigned, err = tlog.AddCosignatures(v.cosigned, lines)
			ts.Check(err)
			fmt.Fprintf(ts.Stdout(), "status 200\n")
		case isConflict:
			fmt.Fprintf(ts.Stdout(), "status 409 size %d\n", ce.Size)
		case isRefusal:
			fmt.Fprintf(ts.Stdout(), "status %d\n%s\n", we.Status, we.Message)
		default:
			ts.Fatalf("add-checkpoint: %v", err)
		}
	case args[0] == "holds" && len(args) == 3:
		v := view(ts, args[2])
		var origin string
		cp, err := noteCheckpoint(v.signed)
		ts.Check(err)
		origin = cp.Origin
		h := sha256.Sum256([]byte(origin))
		resp, err := http.Get(scriptcmds.Addr(ts, args[1]) + "/" + hex.EncodeToString(h[:]) + "/checkpoint")
		ts.Check(err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ts.Check(err)
		if resp.StatusCode != http.StatusOK {
			ts.Fatalf("witness checkpoint: status %d: %s", resp.StatusCode, b)
		}
		got, err := noteCheckpoint(b)
		ts.Check(err)
		if (got.Size == v.size && got.Root == v.root) == neg {
			ts.Fatalf("witness holds size %d root %x; view %s is size %d root %x", got.Size, got.Root[:], args[2], v.size, v.root[:])
		}
	case args[0] == "check" && (len(args) == 2 || len(args) == 3):
		checkView(ts, neg, view(ts, args[1]), args[2:])
	default:
		ts.Fatalf("usage: splitview fork DATADIR TENANT | post ADDRFILE VIEW OLD | holds ADDRFILE VIEW | check VIEW [EVIDENCEFILE]")
	}
}

func view(ts *testscript.TestScript, name string) *logView {
	v := state(ts).views[name]
	if v == nil {
		ts.Fatalf("no view %q: splitview fork first", name)
	}
	return v
}

// splitViews reads the tenant's keys and log from the data directory and
// returns its real view and a fork of the same size.
func splitViews(ts *testscript.TestScript, data, tenant string) map[string]*logView {
	ctx := context.Background()
	id, err := service.ParseTenantID(tenant)
	ts.Check(err)
	dir := tenantDir(data, id)
	_, fk, err := service.ReadKeyFile(filepath.Join(dir, keysFile))
	ts.Check(err)
	var info tenantInfo
	b, err := os.ReadFile(filepath.Join(dir, infoFile))
	ts.Check(err)
	ts.Check(json.Unmarshal(b, &info))
	st, err := openStore(ctx, dir, slog.New(slog.NewTextHandler(io.Discard, nil)), 0)
	ts.Check(err)
	defer st.Close()
	head, err := st.Head(ctx)
	ts.Check(err)
	n := head.LogSize
	if n < 2 || n >= 1<<32 {
		ts.Fatalf("log of size %d", n)
	}
	leaves, err := st.Values(ctx, entriesLabel, 1, uint32(n))
	ts.Check(err)
	last, err := kt.ParseEpochEntry(leaves[n-1])
	ts.Check(err)
	forged := kt.EpochEntry{Epoch: last.Epoch, Time: last.Time.Add(time.Second)}
	rand.Read(forged.MapRoot[:])
	fl, err := forged.Marshal()
	ts.Check(err)
	views := map[string]*logView{}
	for name, ls := range map[string][][]byte{"real": leaves, "fork": append(leaves[:n-1:n-1], fl)} {
		tr, err := tlog.NewTree(ctx, tlog.NewMemoryNodeStore(), 0)
		ts.Check(err)
		_, err = tr.Append(ctx, ls...)
		ts.Check(err)
		root, err := tr.Root(ctx, n)
		ts.Check(err)
		note, err := tlog.SignCheckpoint(&tlog.Checkpoint{Origin: info.Origin, Size: n, Root: root}, fk.TenantKeys().Log)
		ts.Check(err)
		views[name] = &logView{tree: tr, size: n, root: root, signed: note, cosigned: note}
	}
	hc, err := noteCheckpoint(head.Checkpoint)
	ts.Check(err)
	if hc.Size != n || hc.Root != views["real"].root || hc.Origin != info.Origin {
		ts.Fatalf("the store's log does not match its head's checkpoint")
	}
	if views["fork"].root == hc.Root {
		ts.Fatalf("the fork has the real root")
	}
	return views
}

// checkView serves v's cosigned checkpoint to the script's device.
func checkView(ts *testscript.TestScript, neg bool, v *logView, evidence []string) {
	st := state(ts)
	if st.kt == nil {
		ts.Fatalf("enrol first")
	}
	base := st.kt.TreeSize()
	var proof []tlog.Hash
	if base > 0 && base < v.size {
		var err error
		proof, err = v.tree.ConsistencyProof(context.Background(), base, v.size)
		ts.Check(err)
	}
	before, err := st.kt.MarshalState()
	ts.Check(err)
	cp, err := st.kt.UpdateCheckpoint(&kt.ConsistencyResponse{Checkpoint: kt.CheckpointUpdate{BaseSize: base, Note: v.cosigned, Consistency: proof}}, time.Now())
	if (err == nil) == neg {
		ts.Fatalf("checkpoint: %v", err)
	}
	if err == nil {
		fmt.Fprintf(ts.Stdout(), "accepted size %d\n", cp.Size)
		return
	}
	fmt.Fprintf(ts.Stdout(), "%v\n", err)
	fe, isFork := errors.AsType[*tlog.ForkError](err)
	if !isFork {
		after, merr := st.kt.MarshalState()
		ts.Check(merr)
		if !bytes.Equal(before, after) {
			ts.Fatalf("the device's state changed on a refused checkpoint")
		}
		return
	}
	c1, err := noteCheckpoint(fe.Trusted)
	ts.Check(err)
	c2, err := noteCheckpoint(fe.Conflicting)
	ts.Check(err)
	if !fe.Proven() {
		ts.Fatalf("unproven fork: sizes %d and %d", c1.Size, c2.Size)
	}
	// The evidence verifies under the log key: two checkpoints the log
	// signed.
	logKey := st.kt.Bundle().Log
	for _, n := range [][]byte{fe.Trusted, fe.Conflicting} {
		_, err := tlog.OpenCheckpoint(n, c1.Origin, logKey)
		ts.Check(err)
	}
	fmt.Fprintf(ts.Stdout(), "fork proven: size %d roots %x %x\n", c1.Size, c1.Root[:], c2.Root[:])
	saved, err := st.kt.MarshalState()
	ts.Check(err)
	restored, err := kt.RestoreClient(kt.Config{Bundle: st.kt.Bundle(), MaxAge: time.Hour}, saved)
	ts.Check(err)
	if st.kt.Fork() == nil || restored.Fork() == nil {
		ts.Fatalf("the device did not keep the fork")
	}
	if len(evidence) == 1 {
		ev := bytes.Join([][]byte{fe.Trusted, fe.Conflicting}, []byte("\n"))
		ts.Check(os.WriteFile(ts.MkAbs(evidence[0]), ev, 0o644))
	}
}

// noteCheckpoint parses the checkpoint of a signed note without verifying
// it.
func noteCheckpoint(note []byte) (*tlog.Checkpoint, error) {
	text, _, found := strings.Cut(string(note), "\n\n")
	if !found {
		return nil, errors.New("not a signed note")
	}
	return tlog.ParseCheckpoint([]byte(text + "\n"))
}

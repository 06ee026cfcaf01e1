package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/internal/scriptcmds"
	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	// testscript.Main rather than the deprecated RunMain: the scripts run
	// moat-witness as a subprocess of this test binary.
	testscript.Main(m, map[string]func(){"moat-witness": main})
}

// TestScript runs the transcripts in testdata/script: init, vkeys and
// add-log, and serve in the background driven over HTTP.
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Values[scriptStateKey{}] = &scriptState{}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"perm":      cmdPerm,
			"genlogkey": cmdGenLogKey,
			"log":       cmdLog,
			"waitfile":  scriptcmds.WaitFileCmd,
			"httpget":   cmdHTTPGet,
		},
	})
}

type scriptStateKey struct{}

// scriptState is one script's log, driven by the log command.
type scriptState struct {
	log      *testLog
	lastNote []byte // note of the last add-checkpoint request
	lastResp []byte // body of the last add-checkpoint response
}

func state(ts *testscript.TestScript) *scriptState {
	return ts.Value(scriptStateKey{}).(*scriptState)
}

// perm FILE MODE: FILE's permission bits are MODE (octal).
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm file mode")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if got := uint64(fi.Mode().Perm()); (got == want) == neg {
		ts.Fatalf("%s has mode %#o", args[0], got)
	}
}

// genlogkey NAME: generates a log key and sets $NAME_TEXT (moat-log1:…)
// and $NAME_HEX (hex of the binary encoding) to its public key.
func cmdGenLogKey(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: genlogkey name")
	}
	k, err := keys.GenerateLogKey(rand.Reader)
	ts.Check(err)
	ts.Setenv(args[0]+"_TEXT", k.Public().String())
	ts.Setenv(args[0]+"_HEX", hex.EncodeToString(k.Public().Bytes()))
}

// log new ORIGIN          create the script's log; sets $LOG_KEY
// log grow N              append N leaves
// log fork                replace the tree by another of the same size (same key)
// log post ADDRFILE OLD   POST add-checkpoint for the current size, with a
//
//	proof from OLD, to the witness at the address in ADDRFILE; prints
//	"status CODE" and the body
//
// log verify VKEYSFILE    check the last response as a client would, with
//
//	the witness keys in VKEYSFILE and quorum 1
func cmdLog(ts *testscript.TestScript, neg bool, args []string) {
	st := state(ts)
	if len(args) == 0 {
		ts.Fatalf("usage: log new|grow|fork|post|verify ...")
	}
	if args[0] != "new" && st.log == nil {
		ts.Fatalf("log new first")
	}
	t := scriptT{ts}
	switch {
	case args[0] == "new" && len(args) == 2:
		k, err := keys.GenerateLogKey(rand.Reader)
		ts.Check(err)
		tr, err := tlog.NewTree(context.Background(), tlog.NewMemoryNodeStore(), 0)
		ts.Check(err)
		st.log = &testLog{origin: args[1], key: k, tree: tr}
		ts.Setenv("LOG_KEY", k.Public().String())
		ts.Setenv("LOG_HASH", originFile(args[1]))
	case args[0] == "grow" && len(args) == 2:
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		var leaves [][]byte
		for i := range n {
			leaves = append(leaves, fmt.Appendf(nil, "leaf %d of %d", i, st.log.tree.Size()))
		}
		_, err = st.log.tree.Append(context.Background(), leaves...)
		ts.Check(err)
	case args[0] == "fork" && len(args) == 1:
		size := st.log.tree.Size()
		tr, err := tlog.NewTree(context.Background(), tlog.NewMemoryNodeStore(), 0)
		ts.Check(err)
		for i := range size {
			_, err := tr.Append(context.Background(), fmt.Appendf(nil, "forked leaf %d", i))
			ts.Check(err)
		}
		st.log.tree = tr
	case args[0] == "post" && len(args) == 3:
		old, err := strconv.ParseUint(args[2], 10, 64)
		ts.Check(err)
		size := st.log.tree.Size()
		st.lastNote = st.log.note(t, size)
		body := st.log.requestFor(t, old, size, st.lastNote)
		addr := strings.TrimSpace(ts.ReadFile(args[1]))
		resp, err := http.Post("http://"+addr+"/add-checkpoint", "text/plain", bytes.NewReader(body))
		ts.Check(err)
		defer resp.Body.Close()
		st.lastResp, err = io.ReadAll(resp.Body)
		ts.Check(err)
		fmt.Fprintf(ts.Stdout(), "status %d\ncontent-type %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), st.lastResp)
	case args[0] == "verify" && len(args) == 2:
		var ws []*tlog.WitnessPublicKey
		for _, l := range strings.Fields(ts.ReadFile(args[1])) {
			k, err := tlog.ParseWitnessPublicKey(l)
			ts.Check(err)
			ws = append(ws, k)
		}
		v, err := tlog.NewVerifier(tlog.VerifierConfig{Origin: st.log.origin, LogKey: st.log.key.Public(),
			Witnesses: ws, Quorum: 1, MaxAge: time.Hour, NotBefore: time.Now().Add(-time.Hour)})
		ts.Check(err)
		cosigned, err := tlog.AddCosignatures(st.lastNote, st.lastResp)
		if err == nil {
			_, err = v.VerifyCheckpoint(cosigned, nil, time.Now())
		}
		if (err == nil) == neg {
			ts.Fatalf("client verification: %v", err)
		}
	default:
		ts.Fatalf("usage: log new ORIGIN | grow N | fork | post ADDRFILE OLD | verify VKEYSFILE")
	}
}

// scriptT adapts a TestScript to the testing.TB methods testLog uses.
type scriptT struct{ ts *testscript.TestScript }

func (s scriptT) Helper()                   {}
func (s scriptT) Fatal(args ...any)         { s.ts.Fatalf("%s", fmt.Sprint(args...)) }
func (s scriptT) Fatalf(f string, a ...any) { s.ts.Fatalf(f, a...) }

// httpget ADDRFILE PATH: GETs PATH from the witness at the address in
// ADDRFILE and prints "status CODE" and the body.
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: httpget addrfile path")
	}
	addr := strings.TrimSpace(ts.ReadFile(args[0]))
	resp, err := http.Get("http://" + addr + args[1])
	ts.Check(err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "status %d\n%s", resp.StatusCode, body)
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/internal/atomicfile"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/relay/keyserverdir"
	"github.com/moat-im/moat/server/store/blob/fsblob"
	"github.com/moat-im/moat/server/store/mailbox/badgermailbox"
	"github.com/moat-im/moat/server/store/prekey/badgerprekey"
	"github.com/moat-im/moat/server/store/tokens/badgertokens"
)

// The relay's files under the data directory.
const (
	relayDir     = "relay"
	relayKeyFile = "relay.key" // hex seed of the relay signing key, 0600
	relayPubFile = "relay.pub" // its public key, text encoding
	relayMailbox = "mailbox"   // badgermailbox directory
	relayPrekeys = "prekeys"   // badgerprekey directory
	relayTokens  = "tokens"    // badgertokens directory: verifiers, spent tokens
	relayBlobs   = "blobs"     // fsblob directory: attachments
)

// relayKey reads the relay's signing key from DATA/relay/relay.key, or
// creates it (and relay.pub) on first start.
func relayKey(data string) (*keys.RelaySigningPrivateKey, error) {
	dir := filepath.Join(data, relayDir)
	path := filepath.Join(dir, relayKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		k, err := keys.GenerateRelaySigningKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		if err := service.WriteFileExclusive(path, []byte(hex.EncodeToString(k.Seed())+"\n"), 0o600); err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, relayPubFile), []byte(k.Public().String()+"\n"), 0o644); err != nil {
			return nil, err
		}
		return k, nil
	}
	if err != nil {
		return nil, err
	}
	if err := service.CheckPrivateFile(path); err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys.NewRelaySigningKeyFromSeed(seed)
}

// relayServer is the relay of moatd serve: its stores, and the handler
// that serves /relay/v1 next to the directory's API.
type relayServer struct {
	relay   *relay.Relay
	mbox    *badgermailbox.Store
	prekeys *badgerprekey.Store
	tokens  *badgertokens.Store
	blobs   *fsblob.Store
}

// openRelay opens the relay's stores under DATA/relay and a relay whose
// device directory is svc, in the same process.
func openRelay(ctx context.Context, data, name string, svc *service.Service, rc relayConfig, log *slog.Logger) (*relayServer, error) {
	key, err := relayKey(data)
	if err != nil {
		return nil, err
	}
	issuers, err := issuerSet(ctx, data, svc, rc.Dev, log)
	if err != nil {
		return nil, err
	}
	mb, err := badgermailbox.Open(ctx, badgermailbox.Options{Dir: filepath.Join(data, relayDir, relayMailbox), Logger: log})
	if err != nil {
		return nil, err
	}
	bl, err := fsblob.Open(ctx, fsblob.Options{Dir: filepath.Join(data, relayDir, relayBlobs), Logger: log})
	if err != nil {
		mb.Close()
		return nil, err
	}
	pk, err := badgerprekey.Open(ctx, badgerprekey.Options{Dir: filepath.Join(data, relayDir, relayPrekeys), Logger: log})
	if err != nil {
		bl.Close()
		mb.Close()
		return nil, err
	}
	tk, err := badgertokens.Open(ctx, badgertokens.Options{Dir: filepath.Join(data, relayDir, relayTokens), Logger: log})
	if err != nil {
		bl.Close()
		pk.Close()
		mb.Close()
		return nil, err
	}
	rl, err := relay.New(relay.Options{
		Name: name, SigningKey: key, Directory: keyserverdir.Directory{Service: svc},
		Mailboxes: mb, Prekeys: pk, Verifiers: tk, Spent: tk, Quotas: tk,
		Issuers: issuers, TokenIssuer: issuers, Limits: rc.limits(), Issuance: rc.issuance(),
		Logger: log, Registry: svc.Registry(),
		Blobs: bl,
	})
	if err != nil {
		bl.Close()
		tk.Close()
		pk.Close()
		mb.Close()
		return nil, err
	}
	log.Info("relay", slog.String("name", name), slog.String("key", key.Public().String()))
	return &relayServer{relay: rl, mbox: mb, prekeys: pk, tokens: tk, blobs: bl}, nil
}

// handler serves /relay/ with the relay and everything else with next.
func (s *relayServer) handler(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	s.relay.Routes(mux)
	rh := s.relay.Instrument(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/relay/") {
			rh.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// close ends the push channels and closes the stores.
func (s *relayServer) close(log *slog.Logger) {
	s.relay.Close()
	if err := s.blobs.Close(); err != nil {
		log.Error("closing blob store", slog.Any("err", err))
	}
	if err := s.tokens.Close(); err != nil {
		log.Error("closing token store", slog.Any("err", err))
	}
	if err := s.prekeys.Close(); err != nil {
		log.Error("closing prekey store", slog.Any("err", err))
	}
	if err := s.mbox.Close(); err != nil {
		log.Error("closing mailbox store", slog.Any("err", err))
	}
}

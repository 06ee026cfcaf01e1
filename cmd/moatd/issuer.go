package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/internal/atomicfile"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/server/relay"
)

// Anonymous-token issuer keys of moatd serve (docs/spec/api.md
// §Anonymous-token issuance): one per tenant, under DATA/relay/issuer/,
// TENANT.key (hex PKCS #8, 0600) and TENANT.spki (the public SPKI, the
// value an admin publishes with
//
//	moatd admin publish-policy --id delivery-token-issuer --entry-file issuer-key=DATA/relay/issuer/TENANT.spki
//
// so that devices take the key from the directory, never from the relay).
const relayIssuerDir = "issuer"

// loadIssuerKey reads tenant's issuer key from DATA/relay/issuer, or
// returns nil if there is none.
func loadIssuerKey(data string, tenant org.TenantID) (*deliverytoken.IssuerPrivateKey, error) {
	path := filepath.Join(data, relayDir, relayIssuerDir, tenant.String()+".key")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := service.CheckPrivateFile(path); err != nil {
		return nil, err
	}
	der, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k, err := deliverytoken.ParseIssuerPrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// saveIssuerKey writes a new issuer key of tenant (0600) and its SPKI.
func saveIssuerKey(data string, tenant org.TenantID, k *deliverytoken.IssuerPrivateKey) (spkiPath string, err error) {
	dir := filepath.Join(data, relayDir, relayIssuerDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	der, err := k.MarshalPKCS8()
	if err != nil {
		return "", err
	}
	spkiPath = filepath.Join(dir, tenant.String()+".spki")
	if err := atomicfile.WriteFile(spkiPath, k.Public().Bytes(), 0o644); err != nil {
		return "", err
	}
	return spkiPath, service.WriteFileExclusive(filepath.Join(dir, tenant.String()+".key"), []byte(hex.EncodeToString(der)+"\n"), 0o600)
}

// issuerSet loads or creates the issuer key of every tenant of svc. With
// dev, a new key is first published as the tenant's delivery-token-issuer
// policy, in the name of the roster's first admin (the dev tenant's
// admin), in an epoch of its own, and saved only then; otherwise the log
// says how to publish it.
func issuerSet(ctx context.Context, data string, svc *service.Service, dev bool, log *slog.Logger) (*relay.IssuerSet, error) {
	set := relay.NewIssuerSet()
	for _, t := range svc.Tenants() {
		k, err := loadIssuerKey(data, t.ID())
		if err != nil {
			return nil, err
		}
		created := k == nil
		if created {
			if k, err = deliverytoken.GenerateIssuerKey(); err != nil {
				return nil, err
			}
		}
		id := k.Public().KeyID()
		attrs := []any{slog.String("tenant", t.ID().String()), slog.String("key_id", hex.EncodeToString(id[:]))}
		if created && dev {
			err := t.Admin(func(o *org.Tenant) error {
				r := o.Roster()
				if r == nil || len(r.Admins) == 0 {
					return errors.New("no admin")
				}
				_, err := o.PublishPolicy(r.Admins[0].ID(), relay.IssuerPolicyID,
					[]org.PolicyEntry{{Key: relay.IssuerPolicyKey, Value: k.Public().Bytes()}}, time.Now())
				return err
			})
			if err == nil {
				_, err = t.PublishEpoch(ctx, time.Now())
			}
			if err != nil {
				return nil, fmt.Errorf("publishing the dev token issuer key: %w", err)
			}
		}
		if created {
			spki, err := saveIssuerKey(data, t.ID(), k)
			if err != nil {
				return nil, err
			}
			if dev {
				log.Info("token issuer key published (dev)", attrs...)
			} else {
				log.Warn("new token issuer key: publish it with moatd admin publish-policy --id "+relay.IssuerPolicyID+
					" --entry-file "+relay.IssuerPolicyKey+"="+spki, attrs...)
			}
		} else {
			log.Info("token issuer key", attrs...)
		}
		set.Set(t.ID(), k)
	}
	return set, nil
}

// relayConfig is what moatd serve's flags say of the relay.
type relayConfig struct {
	Dev       bool     // --dev
	Unlimited bool     // --dev-unlimited: no rate limits
	Limits    []string // --relay-limit NAME=RATE/BURST
}

// relayLimitFields names the relay's rate limits for --relay-limit
// (relay.Limits, docs/spec/api.md §Limits).
func relayLimitFields(l *relay.Limits) map[string]*relay.Rate {
	return map[string]*relay.Rate{
		"per-address": &l.PerAddress, "challenge": &l.Challenge, "per-device": &l.PerDevice,
		"per-tenant": &l.PerTenant, "send-per-address": &l.SendPerAddress, "send-per-token": &l.SendPerToken,
		"send-per-mailbox": &l.SendPerMailbox, "bundle-per-target": &l.BundlePerTarget,
	}
}

// relayLimitNames lists the names --relay-limit takes, sorted.
func relayLimitNames() []string {
	return slices.Sorted(maps.Keys(relayLimitFields(new(relay.Limits))))
}

// limits returns the relay's limits: the defaults, those set by
// --relay-limit, or with Unlimited every rate limit lifted (sizes stay
// bounded). The flags were checked by limitsChecked at start.
func (c relayConfig) limits() relay.Limits {
	l, err := c.limitsChecked()
	if err != nil {
		panic(err) // checked at start
	}
	return l
}

// limitsChecked is limits, refusing a malformed --relay-limit.
func (c relayConfig) limitsChecked() (relay.Limits, error) {
	var l relay.Limits
	fields := relayLimitFields(&l)
	if c.Unlimited {
		for _, r := range fields {
			*r = relay.Rate{PerSecond: -1}
		}
		return l, nil
	}
	for _, s := range c.Limits {
		name, val, ok := strings.Cut(s, "=")
		rateText, burstText, ok2 := strings.Cut(val, "/")
		r, known := fields[name]
		if !ok || !ok2 || !known {
			return relay.Limits{}, fmt.Errorf("--relay-limit %q: want NAME=RATE/BURST, NAME one of %s", s, strings.Join(relayLimitNames(), ", "))
		}
		rate, err1 := strconv.ParseFloat(rateText, 64)
		burst, err2 := strconv.Atoi(burstText)
		if err1 != nil || err2 != nil || !(rate > 0) || math.IsInf(rate, 0) || burst < 1 {
			return relay.Limits{}, fmt.Errorf("--relay-limit %q: RATE must be a positive number per second and BURST a positive integer", s)
		}
		*r = relay.Rate{PerSecond: rate, Burst: burst}
	}
	return l, nil
}

// issuance returns the relay's token issuance quotas: the defaults, or
// with Unlimited about a billion a day.
func (c relayConfig) issuance() relay.IssuanceLimits {
	if c.Unlimited {
		return relay.IssuanceLimits{PerDevicePerDay: 1 << 30, PerTenantPerDay: 1 << 30}
	}
	return relay.IssuanceLimits{}
}

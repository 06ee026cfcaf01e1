package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/spf13/cobra"
)

// initOptions are the flags of init (and of directory --dev's first
// start).
type initOptions struct {
	Data         string
	Tenant       string
	Domain       string
	WitnessVkeys []string
	Quorum       int
	Admins       []string
	Threshold    int
	Dev          bool
}

func newInitCmd() *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init --data DIR (--dev | --admin FILE.pub ...) [--witness-vkeys FILE ...]",
		Short: "Create a tenant: its keys, its store and its first epoch",
		Long: `init creates a tenant in the data directory DIR: new CA, log and VRF keys
and a commitment secret in DIR/tenants/<tenant>/keys.json (mode 0600; the
keys are in clear on disk: a KMS- or tink-backed keystore is future work),
a badger store, and the first epoch, which publishes the tenant's trust
bundle, admin roster and org chart.

The trust bundle names the witnesses (--witness-vkeys: files of vkeys, as
moat-witness init prints them) with their quorum (--quorum, default a
majority), and the admins (--admin: public key files from moatd admin
keygen; at least two, --threshold of them for dual control).

With --dev, init generates two admin keys in DIR/dev, an embedded witness
if no --witness-vkeys are given, and a demo user with an enrolment code.

init prints the tenant id, the log's origin and its public key: give the
origin and key to every witness (moat-witness add-log).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelError}))
			_, err := createTenant(cmd.Context(), o, cmd.OutOrStdout(), log)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Data, "data", "", "data directory")
	cmd.MarkFlagRequired("data")
	f.StringVar(&o.Tenant, "tenant", "", "tenant id, 32 hex characters (default: random)")
	f.StringVar(&o.Domain, "domain", "moat.localhost", "the service's domain, for the log origin <domain>/directory/<tenant>")
	f.StringArrayVar(&o.WitnessVkeys, "witness-vkeys", nil, "file of witness vkeys (repeatable)")
	f.IntVar(&o.Quorum, "quorum", 0, "witness cosignatures clients require (default: a majority)")
	f.StringArrayVar(&o.Admins, "admin", nil, "admin public key file from moatd admin keygen (repeatable, at least two)")
	f.IntVar(&o.Threshold, "threshold", 2, "admin approvals dual control requires")
	f.BoolVar(&o.Dev, "dev", false, "development tenant: generated admin keys, embedded witness, demo user")
	return cmd
}

// createTenant creates a tenant as init describes and prints what an
// operator needs. It returns the tenant id.
func createTenant(ctx context.Context, o initOptions, out io.Writer, log *slog.Logger) (org.TenantID, error) {
	var id org.TenantID
	var err error
	if o.Tenant != "" {
		if id, err = service.ParseTenantID(o.Tenant); err != nil {
			return id, fmt.Errorf("--tenant: %w", err)
		}
	} else {
		rand.Read(id[:])
	}
	dir := tenantDir(o.Data, id)
	if _, err := os.Stat(dir); err == nil {
		return id, fmt.Errorf("tenant %s already exists in %s", id, o.Data)
	}
	origin := service.Origin(o.Domain, id)

	// Witnesses.
	wks, err := readVkeys(o.WitnessVkeys)
	if err != nil {
		return id, err
	}
	if len(wks) == 0 {
		if !o.Dev {
			return id, errors.New("no witnesses: give --witness-vkeys (or --dev for an embedded witness)")
		}
		ks, err := devWitnessKeys(o.Data, true)
		if err != nil {
			return id, err
		}
		wks = append(wks, witnessKeyOf(ks))
	}
	quorum := o.Quorum
	if quorum == 0 {
		quorum = len(wks)/2 + 1
	}
	if 2*quorum <= len(wks) {
		return id, fmt.Errorf("--quorum %d of %d witnesses: %w", quorum, len(wks), org.ErrWitnessQuorum)
	}

	// Admins.
	var admins []*org.AdminKey
	var adminFiles []string
	if o.Dev {
		if err := os.MkdirAll(filepath.Join(o.Data, devDir), 0o700); err != nil {
			return id, err
		}
		for i, scheme := range []org.AdminScheme{org.AdminHybrid, org.AdminEd25519} {
			aid := org.AdminID{0xad, byte(i + 1)}
			copy(aid[2:], id[:14])
			k, err := org.GenerateAdminKey(rand.Reader, aid, scheme)
			if err != nil {
				return id, err
			}
			path := filepath.Join(o.Data, devDir, fmt.Sprintf("admin-%d-%s.key", i+1, id))
			if err := writeAdminKey(path, id, k); err != nil {
				return id, err
			}
			admins = append(admins, k.Public())
			adminFiles = append(adminFiles, path)
		}
	}
	for _, p := range o.Admins {
		k, err := readAdminPub(p)
		if err != nil {
			return id, err
		}
		admins = append(admins, k)
	}
	if len(admins) < 2 {
		return id, errors.New("a tenant needs at least two admins (--admin), for dual control")
	}

	// Keys, store, first epoch.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return id, err
	}
	fk, err := service.GenerateFileKeys(nil)
	if err != nil {
		return id, err
	}
	if err := service.WriteKeyFile(filepath.Join(dir, keysFile), id, fk); err != nil {
		return id, err
	}
	st, err := openStore(ctx, dir, log, 0)
	if err != nil {
		return id, err
	}
	defer st.Close()
	svc, err := service.New(ctx, service.Options{Logger: log, Tenants: []service.TenantConfig{{
		ID: id, Store: st, Keys: fk.TenantKeys(),
		Create: &service.CreateParams{Origin: origin, Admins: admins, Threshold: o.Threshold,
			Witnesses: org.WitnessSet{Witnesses: wks, Quorum: quorum}},
	}}})
	if err != nil {
		return id, err
	}
	info := tenantInfo{Tenant: id.String(), Origin: origin, LogKey: fk.Log.Public().String()}
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := service.WriteFileExclusive(filepath.Join(dir, infoFile), append(b, '\n'), 0o644); err != nil {
		return id, err
	}
	fmt.Fprintf(out, "tenant %s\norigin %s\nlog-key %s\n", id, origin, info.LogKey)

	if o.Dev {
		// A demo user with an enrolment code, published in epoch 1 so
		// that the code is durable.
		t := svc.Tenant(id)
		demo := org.UserID{0xde, 0x30}
		copy(demo[2:], id[:14])
		var code *org.EnrolmentCode
		actor := admins[0].ID()
		err := t.Admin(func(ot *org.Tenant) error {
			if _, err := ot.AddUser(actor, demo, "Demo User", org.DepartmentID{}, time.Now()); err != nil {
				return err
			}
			var err error
			code, err = ot.IssueEnrolmentCode(rand.Reader, actor, demo, ot.Config().MaxCodeLifetime, time.Now())
			return err
		})
		if err != nil {
			return id, err
		}
		if _, err := t.PublishEpoch(ctx, time.Now()); err != nil {
			return id, err
		}
		for _, p := range adminFiles {
			fmt.Fprintf(out, "admin-key %s\n", p)
		}
		fmt.Fprintf(out, "demo-user %s\nenrolment-code %s\n", demo, code.Text())
	}
	return id, nil
}

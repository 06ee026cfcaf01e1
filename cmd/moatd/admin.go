package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/spf13/cobra"
)

type adminOptions struct {
	Server string
	Key    string
	Tenant string
	// Timeout bounds one API call.
	Timeout time.Duration
}

func newAdminCmd() *cobra.Command {
	o := &adminOptions{}
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer a tenant through the admin API",
		Long: `admin calls the directory's admin API (POST /v1/{tenant}/admin/...), signing
each request with an admin key of the tenant's roster (--key, a file from
moatd admin keygen or moatd init --dev). The tenant is the key file's,
unless --tenant says otherwise. Changes are published at the next epoch;
admin publish publishes one now.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.Server, "server", "http://127.0.0.1:8440", "the directory's URL")
	pf.StringVar(&o.Key, "key", "", "admin private key file")
	pf.StringVar(&o.Tenant, "tenant", "", "tenant id (default: the key file's)")
	pf.DurationVar(&o.Timeout, "timeout", 30*time.Second, "timeout of one request")
	cmd.AddCommand(newKeygenCmd(), newAddUserCmd(o), newIssueCodeCmd(o), newRevokeDeviceCmd(o), newApproveCmd(o), newListCmd(o),
		newPublishCmd(o), newSetWitnessesCmd(o), newRotateCACmd(o), newRotateLogKeyCmd(o))
	cmd.AddCommand(orgTreeCmds(o)...)
	cmd.AddCommand(statementCmds(o)...)
	return cmd
}

// client returns an API client signing with the admin key.
func (o *adminOptions) client() (*service.Client, error) {
	if o.Key == "" {
		return nil, errors.New("--key is required")
	}
	tenant, k, err := readAdminKey(o.Key)
	if err != nil {
		return nil, err
	}
	if o.Tenant != "" {
		if tenant, err = service.ParseTenantID(o.Tenant); err != nil {
			return nil, fmt.Errorf("--tenant: %w", err)
		}
	}
	if tenant.IsZero() {
		return nil, errors.New("no tenant: give --tenant")
	}
	return &service.Client{BaseURL: o.Server, Tenant: tenant, Admin: k, HTTP: &http.Client{Timeout: o.Timeout}}, nil
}

func newKeygenCmd() *cobra.Command {
	var out, tenant, id string
	var ed bool
	cmd := &cobra.Command{
		Use:   "keygen --out FILE [--tenant HEX] [--id HEX] [--ed25519]",
		Short: "Generate an admin key",
		Long: `keygen generates an admin key (hybrid Ed25519 + ML-DSA-65 unless --ed25519),
writes it to FILE with mode 0600 and its public key to FILE.pub, for
moatd init --admin. The key is in clear on disk: protect the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var t org.TenantID
			var err error
			if tenant != "" {
				if t, err = service.ParseTenantID(tenant); err != nil {
					return fmt.Errorf("--tenant: %w", err)
				}
			}
			var aid org.AdminID
			if id != "" {
				if aid, err = parseAdminID(id); err != nil {
					return err
				}
			} else {
				rand.Read(aid[:])
			}
			scheme := org.AdminHybrid
			if ed {
				scheme = org.AdminEd25519
			}
			k, err := org.GenerateAdminKey(rand.Reader, aid, scheme)
			if err != nil {
				return err
			}
			if err := writeAdminKey(out, t, k); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "admin %s\nkey %s\npublic %s.pub\n", aid, out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "private key file to create")
	cmd.MarkFlagRequired("out")
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id to record in the key file")
	cmd.Flags().StringVar(&id, "id", "", "admin id, 32 hex characters (default: random)")
	cmd.Flags().BoolVar(&ed, "ed25519", false, "an Ed25519 key instead of a hybrid one")
	return cmd
}

func newAddUserCmd(o *adminOptions) *cobra.Command {
	var in service.AddUserRequest
	cmd := &cobra.Command{
		Use:   "add-user --name NAME [--user HEX] [--department HEX]",
		Short: "Add a user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var out service.OKResponse
			if err := c.AdminOp(cmd.Context(), "add-user", in, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s\npending-epoch %d\n", out.User, out.PendingEpoch)
			return nil
		},
	}
	cmd.Flags().StringVar(&in.DisplayName, "name", "", "display name")
	cmd.MarkFlagRequired("name")
	cmd.Flags().StringVar(&in.User, "user", "", "user id, 32 hex characters (default: random)")
	cmd.Flags().StringVar(&in.Department, "department", "", "department id")
	return cmd
}

func newIssueCodeCmd(o *adminOptions) *cobra.Command {
	var user string
	var life time.Duration
	cmd := &cobra.Command{
		Use:   "issue-code --user HEX [--lifetime 24h]",
		Short: "Issue an enrolment code for a user's new device",
		Long: `issue-code issues a single-use enrolment code and prints it. The code is a
secret: hand it to its user only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var out service.IssueCodeResponse
			in := service.IssueCodeRequest{User: user, LifetimeSeconds: int64(life / time.Second)}
			if err := c.AdminOp(cmd.Context(), "issue-code", in, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "code %s\ncode-id %s\nexpires %s\n", out.Code, out.CodeID,
				time.Unix(out.ExpiresAt, 0).UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "user id")
	cmd.MarkFlagRequired("user")
	cmd.Flags().DurationVar(&life, "lifetime", 24*time.Hour, "validity of the code (at most the tenant's maximum, 7 days by default)")
	return cmd
}

func newRevokeDeviceCmd(o *adminOptions) *cobra.Command {
	var in service.RevokeDeviceRequest
	var wipeOut string
	cmd := &cobra.Command{
		Use:   "revoke-device --user HEX --device HEX [--reason lost] [--wipe-out FILE]",
		Short: "Revoke a device",
		Long: `revoke-device revokes a device's certificates; the next epoch publishes a
device_revoked entry in its user's timeline. --wipe-out writes the CA-signed
wipe instruction for the device (docs/spec/org.md §Wipe instructions), which
the device acts on with moat wipe --instruction FILE.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var out service.RevokeDeviceResponse
			if err := c.AdminOp(cmd.Context(), "revoke-device", in, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s serials %v\n", in.Device, out.Serials)
			if wipeOut != "" {
				if err := os.WriteFile(wipeOut, out.Wipe, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wipe instruction %s\n", wipeOut)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&wipeOut, "wipe-out", "", "write the device's signed wipe instruction to this file")
	cmd.Flags().StringVar(&in.User, "user", "", "user id")
	cmd.MarkFlagRequired("user")
	cmd.Flags().StringVar(&in.Device, "device", "", "device id")
	cmd.MarkFlagRequired("device")
	cmd.Flags().StringVar(&in.Reason, "reason", "unspecified", "unspecified, lost, compromised, user-removed or retired")
	return cmd
}

// approveResponse is the answer of admin/approve.
type approveResponse struct {
	Approvals int `json:"approvals"`
	Threshold int `json:"threshold"`
}

// requestFingerprint returns what an admin compares before approving an
// enrolment request: the hex SHA-256 of its encoding, which names the
// tenant, the code and every key of the new device.
func requestFingerprint(enc []byte) string {
	h := sha256.Sum256(enc)
	return hex.EncodeToString(h[:])
}

func newApproveCmd(o *adminOptions) *cobra.Command {
	var user, request, expect string
	cmd := &cobra.Command{
		Use:   "approve --user HEX --request FILE [--expect FINGERPRINT]",
		Short: "Approve a lost-device recovery: a new device without the user's other devices",
		Long: `approve approves, with the admin key, the enrolment request in FILE (the
EnrolmentRequest encoding that the new device made for its code) as a
device of the user, for a user who lost their devices (docs/spec/org.md
§Dual control). It prints the request's code id and fingerprint (hex
SHA-256 of FILE): compare them with the code issued to the user and with
the fingerprint the new device shows (--expect refuses any other request).
The directory holds the approval, durably, until the device enrols; the
device enrols once the roster's threshold of admins approved the same
request. Its enrolment is a device_recovered entry in the user's
timeline, which the user's other devices report when they monitor it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			uid, err := service.ParseUserID(user)
			if err != nil {
				return fmt.Errorf("--user: %w", err)
			}
			enc, err := os.ReadFile(request)
			if err != nil {
				return err
			}
			req, err := org.ParseEnrolmentRequest(enc)
			if err != nil {
				return fmt.Errorf("--request: %w", err)
			}
			if req.Tenant != c.Tenant {
				return fmt.Errorf("--request: a request of tenant %s, not %s", req.Tenant, c.Tenant)
			}
			fp := requestFingerprint(enc)
			fmt.Fprintf(cmd.OutOrStdout(), "request for code %s: fingerprint %s\n", req.Code, fp)
			if expect != "" && !strings.EqualFold(expect, fp) {
				return fmt.Errorf("the request's fingerprint is %s, not %s: not approved", fp, expect)
			}
			ap, err := org.ApproveByAdmin(c.Admin, uid, req)
			if err != nil {
				return err
			}
			apb, err := ap.Marshal()
			if err != nil {
				return err
			}
			var out approveResponse
			if err := c.AdminOp(cmd.Context(), "approve", service.ApproveRequest{User: user, Request: enc, Approval: apb}, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approved: %d of %d approvals\n", out.Approvals, out.Threshold)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&user, "user", "", "user id")
	cmd.MarkFlagRequired("user")
	f.StringVar(&request, "request", "", "the new device's enrolment request (EnrolmentRequest encoding)")
	cmd.MarkFlagRequired("request")
	f.StringVar(&expect, "expect", "", "approve only a request with this fingerprint (hex)")
	return cmd
}

func newListCmd(o *adminOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the published users and their devices",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var out service.ListResponse
			if err := c.AdminOp(cmd.Context(), "list", nil, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "epoch %d\n", out.Epoch)
			fmt.Fprintln(tw, "USER\tNAME\tDEPARTMENT\tDEVICE\tSERIAL\tNOT AFTER")
			for _, u := range out.Users {
				dept := u.Department
				if dept == "" {
					dept = "-"
				}
				if len(u.Devices) == 0 {
					fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\n", u.User, u.DisplayName, dept)
				}
				for _, d := range u.Devices {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", u.User, u.DisplayName, dept, d.Device, d.Serial,
						time.Unix(d.NotAfter, 0).UTC().Format(time.RFC3339))
				}
			}
			return tw.Flush()
		},
	}
}

func newPublishCmd(o *adminOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "publish",
		Short: "Publish an epoch now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var out service.PublishResponse
			if err := c.AdminOp(cmd.Context(), "publish", nil, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "epoch %d cosigned %v\n", out.Epoch, out.Cosigned)
			return nil
		},
	}
}

func newSetWitnessesCmd(o *adminOptions) *cobra.Command {
	var vkeys []string
	var quorum int
	var proposal, out string
	cmd := &cobra.Command{
		Use:   "set-witnesses (--witness-vkeys FILE ... [--quorum N] [--out FILE] | --proposal FILE)",
		Short: "Approve a new witness set and quorum",
		Long: `set-witnesses approves, with the admin key, a trust bundle that replaces the
witness set (--witness-vkeys, --quorum: default a majority), built from the
directory's current bundle and written to --out for the other admins, or
the proposal another admin wrote (--proposal). The directory applies it
once the roster's threshold of admins approved the same proposal, and
publishes it at the next epoch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var enc []byte
			if proposal != "" {
				if enc, err = os.ReadFile(proposal); err != nil {
					return err
				}
			} else {
				wks, err := readVkeys(vkeys)
				if err != nil {
					return err
				}
				if len(wks) == 0 {
					return errors.New("give --witness-vkeys or --proposal")
				}
				if quorum == 0 {
					quorum = len(wks)/2 + 1
				}
				if 2*quorum <= len(wks) {
					return fmt.Errorf("--quorum %d of %d witnesses: %w", quorum, len(wks), org.ErrWitnessQuorum)
				}
				raw, err := c.TrustBundle(cmd.Context())
				if err != nil {
					return err
				}
				cur, err := org.ParseTrustBundle(raw)
				if err != nil {
					return err
				}
				p := service.ProposeWitnesses(cur, org.WitnessSet{Witnesses: wks, Quorum: quorum}, time.Now())
				if enc, err = service.MarshalProposal(p); err != nil {
					return err
				}
				if out != "" {
					if err := service.WriteFileExclusive(out, enc, 0o644); err != nil {
						return err
					}
				}
			}
			prop, err := org.ParseTrustBundle(enc)
			if err != nil {
				return fmt.Errorf("proposal: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bundle %d: quorum %d of", prop.Sequence, prop.Witnesses.Quorum)
			for _, w := range prop.Witnesses.Witnesses {
				fmt.Fprintf(cmd.OutOrStdout(), " %s", w.Name)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			ap, err := org.ApproveTrustBundle(c.Admin, prop)
			if err != nil {
				return err
			}
			apb, err := ap.Marshal()
			if err != nil {
				return err
			}
			return postApproval(cmd, c, "set-witnesses", "bundle", service.TrustBundleApproveRequest{Bundle: enc, Approval: apb})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&vkeys, "witness-vkeys", nil, "file of witness vkeys (repeatable)")
	f.IntVar(&quorum, "quorum", 0, "witness cosignatures clients require (default: a majority)")
	f.StringVar(&proposal, "proposal", "", "approve this proposal, written by another admin's --out")
	f.StringVar(&out, "out", "", "write the proposal here, for the other admins")
	return cmd
}

func newRotateCACmd(o *adminOptions) *cobra.Command {
	return newRotateCmd(o, "rotate-ca", "CA key", `The new CA key re-signs the trust bundle, the roster, the org chart
and the policies, and every active device's certificate is re-issued
under it; outstanding enrolment codes are cancelled. Clients follow the
rotation statement, which the old and the new key sign.`)
}

func newRotateLogKeyCmd(o *adminOptions) *cobra.Command {
	return newRotateCmd(o, "rotate-log-key", "log key", `The checkpoint of the epoch that publishes the new bundle is signed by
the old key and announces the new one, which the witnesses then require;
the new key signs from the next epoch on.`)
}

// newRotateCmd is admin rotate-ca and rotate-log-key: the dual-controlled
// key rotations of docs/spec/directory-api.md §Key rotations.
func newRotateCmd(o *adminOptions, op, what, more string) *cobra.Command {
	var expect string
	cmd := &cobra.Command{
		Use:   op + " [--expect FINGERPRINT]",
		Short: "Approve a rotation of the tenant's " + what,
		Long: op + ` asks the directory for the rotation of the ` + what + ` under approval
(the directory generates the new key and stores it with the tenant's keys
if there is none), prints the new key's fingerprint (hex SHA-256 of its
binary encoding), and approves the proposed trust bundle with the admin
key. Once the roster's threshold of admins approved the same proposal the
directory applies it, and publishes it at the next epoch. Compare the
fingerprint with the other admins' (--expect refuses to approve another
key).

` + more,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, w := cmd.Context(), cmd.OutOrStdout()
			c, err := o.client()
			if err != nil {
				return err
			}
			var prop service.RotationProposal
			if err := c.AdminOp(ctx, op, nil, &prop); err != nil {
				return err
			}
			b, err := org.ParseTrustBundle(prop.Bundle)
			if err != nil {
				return fmt.Errorf("proposal: %w", err)
			}
			raw, err := c.TrustBundle(ctx)
			if err != nil {
				return err
			}
			cur, err := org.ParseTrustBundle(raw)
			if err != nil {
				return err
			}
			var key []byte
			switch op {
			case "rotate-ca":
				if b.CA.Equal(cur.CA) || b.CA.String() != prop.Key {
					return errors.New("the proposal does not name a new CA key")
				}
				key = b.CA.Bytes()
			default:
				if b.Log.Equal(cur.Log) || b.Log.String() != prop.Key {
					return errors.New("the proposal does not name a new log key")
				}
				key = b.Log.Bytes()
			}
			if b.Tenant != cur.Tenant || b.LogOrigin != cur.LogOrigin || !b.VRF.Equal(cur.VRF) || b.Sequence <= cur.Sequence {
				return errors.New("the proposal does not continue the published trust bundle")
			}
			fp := sha256.Sum256(key)
			fmt.Fprintf(w, "bundle %d: new %s %x\n", b.Sequence, what, fp)
			if expect != "" && !strings.EqualFold(expect, hex.EncodeToString(fp[:])) {
				return fmt.Errorf("the directory proposes %x, not %s: not approved", fp, expect)
			}
			ap, err := org.ApproveTrustBundle(c.Admin, b)
			if err != nil {
				return err
			}
			apb, err := ap.Marshal()
			if err != nil {
				return err
			}
			var res service.TrustBundleApproveResponse
			if err := c.AdminOp(ctx, op, service.RotateRequest{Bundle: prop.Bundle, Approval: apb}, &res); err != nil {
				return err
			}
			if !res.Applied {
				fmt.Fprintf(w, "approved: %d of %d approvals\n", res.Approvals, res.Threshold)
				return nil
			}
			fmt.Fprintf(w, "applied: bundle %d, published at epoch %d or later\n", res.Sequence, res.PendingEpoch)
			if op == "rotate-ca" {
				fmt.Fprintf(w, "certificates re-issued %d\n", res.Certificates)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&expect, "expect", "", "approve only a new key with this fingerprint (hex)")
	return cmd
}

// postApproval sends an admin's approval of a dual-controlled proposal
// (set-witnesses, update-roster) and prints how far it got: applied, or
// the approvals so far. what names the proposal's kind in the output.
func postApproval(cmd *cobra.Command, c *service.Client, op, what string, req any) error {
	var res service.TrustBundleApproveResponse
	if err := c.AdminOp(cmd.Context(), op, req, &res); err != nil {
		return err
	}
	if res.Applied {
		fmt.Fprintf(cmd.OutOrStdout(), "applied: %s %d, published at epoch %d or later\n", what, res.Sequence, res.PendingEpoch)
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "approved: %d of %d approvals\n", res.Approvals, res.Threshold)
	}
	return nil
}

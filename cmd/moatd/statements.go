package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/spf13/cobra"
)

// Admin subcommands for org statements (docs/spec/directory-api.md §Admin
// operations): policy bundles, the escrow policy and the admin roster.

func statementCmds(o *adminOptions) []*cobra.Command {
	return []*cobra.Command{newPublishPolicyCmd(o), newAssignPolicyCmd(o), newSetEscrowPolicyCmd(o), newUpdateRosterCmd(o)}
}

func newPublishPolicyCmd(o *adminOptions) *cobra.Command {
	var id string
	var entries, files []string
	cmd := &cobra.Command{
		Use:   "publish-policy --id ID [--entry KEY=VALUE ...] [--entry-file KEY=FILE ...]",
		Short: "Publish the next version of a policy bundle",
		Long: `publish-policy signs the next version of the policy bundle ID with the
tenant's CA, replacing all its entries: each --entry gives a key and its
value, each --entry-file a key and the file holding its value (a word list,
for instance). Users assigned to the policy see a policy-changed entry in
their timeline. It is published at the next epoch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			in := service.PublishPolicyRequest{PolicyID: id, Entries: []service.PolicyEntry{}}
			for _, e := range entries {
				k, v, found := strings.Cut(e, "=")
				if !found {
					return fmt.Errorf("--entry %q: want KEY=VALUE", e)
				}
				in.Entries = append(in.Entries, service.PolicyEntry{Key: k, Value: []byte(v)})
			}
			for _, e := range files {
				k, path, found := strings.Cut(e, "=")
				if !found {
					return fmt.Errorf("--entry-file %q: want KEY=FILE", e)
				}
				v, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				in.Entries = append(in.Entries, service.PolicyEntry{Key: k, Value: v})
			}
			var out service.OKResponse
			if err := c.AdminOp(cmd.Context(), "publish-policy", in, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy %s version %d, published at epoch %d or later\n", id, out.Sequence, out.PendingEpoch)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "policy id")
	cmd.MarkFlagRequired("id")
	f.StringArrayVar(&entries, "entry", nil, "KEY=VALUE (repeatable)")
	f.StringArrayVar(&files, "entry-file", nil, "KEY=FILE: the value is the file's contents (repeatable)")
	return cmd
}

func newAssignPolicyCmd(o *adminOptions) *cobra.Command {
	var in service.AssignPolicyRequest
	cmd := &cobra.Command{
		Use:   "assign-policy --user HEX [--id ID]",
		Short: "Make a user subject to a policy bundle (none without --id)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var out service.OKResponse
			if err := c.AdminOp(cmd.Context(), "assign-policy", in, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pending-epoch %d\n", out.PendingEpoch)
			return nil
		},
	}
	cmd.Flags().StringVar(&in.User, "user", "", "user id")
	cmd.MarkFlagRequired("user")
	cmd.Flags().StringVar(&in.PolicyID, "id", "", "policy id (empty: no policy)")
	return cmd
}

func newSetEscrowPolicyCmd(o *adminOptions) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "set-escrow-policy --policy FILE",
		Short: "Publish an escrow policy signed by its auditors",
		Long: `set-escrow-policy sends the escrow policy in FILE (the EscrowPolicy encoding,
docs/spec/org.md §Escrow policy) to the directory, which publishes it at
the next epoch only if at least M of its auditors signed it (and, for a new
auditor set, M of the outgoing set) and its version is the next one. The
auditors produce FILE with their escrow key ceremony; the header and the CA
signature in it are replaced by the directory's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			enc, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			p, err := org.ParseEscrowPolicy(enc)
			if err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "escrow policy version %d: %d of %d auditors,", p.PolicyVersion, p.M, p.N)
			for _, a := range p.Auditors {
				fmt.Fprintf(cmd.OutOrStdout(), " %q", a.Name)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "; %d escrow keys; %d auditor signatures\n", len(p.Keys), len(p.AuditorSignatures))
			var out service.OKResponse
			if err := c.AdminOp(cmd.Context(), "set-escrow-policy", service.EscrowPolicyRequest{Policy: enc}, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "escrow policy statement %d, published at epoch %d or later\n", out.Sequence, out.PendingEpoch)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "policy", "", "EscrowPolicy file signed by its auditors")
	cmd.MarkFlagRequired("policy")
	return cmd
}

func newUpdateRosterCmd(o *adminOptions) *cobra.Command {
	var add, remove []string
	var threshold int
	var proposal, out string
	cmd := &cobra.Command{
		Use:   "update-roster ([--add A.pub ...] [--remove HEX ...] [--threshold M] [--out FILE] | --proposal FILE)",
		Short: "Approve a change of the admin roster",
		Long: `update-roster approves, with the admin key, a new admin roster: the current
one (from the directory) with the admins of the --add public key files
added, the --remove admin ids removed and the threshold --threshold (default:
unchanged), written to --out for the other admins; or the proposal another
admin wrote (--proposal). A roster with fewer admins than its threshold is
refused. The directory applies it once the current threshold of current
admins approved the same proposal, and publishes it at the next epoch; a
new admin can sign requests from then on.`,
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
				if len(add) == 0 && len(remove) == 0 && threshold == 0 {
					return errors.New("give --add, --remove, --threshold or --proposal")
				}
				var rr service.RosterResponse
				if err := c.AdminOp(cmd.Context(), "get-roster", nil, &rr); err != nil {
					return err
				}
				cur, err := org.ParseAdminRoster(rr.Roster)
				if err != nil {
					return err
				}
				admins, err := rosterChange(cur, add, remove)
				if err != nil {
					return err
				}
				if threshold == 0 {
					threshold = cur.Threshold
				}
				p, err := org.ProposeRoster(cur, admins, threshold, time.Now())
				if err != nil {
					return err
				}
				if enc, err = service.MarshalRosterProposal(p); err != nil {
					return err
				}
				if out != "" {
					if err := service.WriteFileExclusive(out, enc, 0o644); err != nil {
						return err
					}
				}
			}
			prop, err := org.ParseAdminRoster(enc)
			if err != nil {
				return fmt.Errorf("proposal: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "roster %d: threshold %d of", prop.Sequence, prop.Threshold)
			for _, a := range prop.Admins {
				fmt.Fprintf(cmd.OutOrStdout(), " %s", a.ID())
			}
			fmt.Fprintln(cmd.OutOrStdout())
			ap, err := org.ApproveRoster(c.Admin, prop)
			if err != nil {
				return err
			}
			apb, err := ap.Marshal()
			if err != nil {
				return err
			}
			return postApproval(cmd, c, "update-roster", "roster", service.RosterApproveRequest{Roster: enc, Approval: apb})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&add, "add", nil, "public key file of an admin to add (repeatable)")
	f.StringArrayVar(&remove, "remove", nil, "id of an admin to remove (repeatable)")
	f.IntVar(&threshold, "threshold", 0, "approvals dual control requires (default: unchanged)")
	f.StringVar(&proposal, "proposal", "", "approve this proposal, written by another admin's --out")
	f.StringVar(&out, "out", "", "write the proposal here, for the other admins")
	return cmd
}

// rosterChange returns the admins of cur with those of the key files add
// added and the ids remove removed.
func rosterChange(cur *org.AdminRoster, add, remove []string) ([]*org.AdminKey, error) {
	gone := map[org.AdminID]bool{}
	for _, s := range remove {
		id, err := parseAdminID(s)
		if err != nil {
			return nil, err
		}
		if cur.Admin(id) == nil {
			return nil, fmt.Errorf("--remove %s: not an admin of the roster", s)
		}
		gone[id] = true
	}
	var admins []*org.AdminKey
	for _, a := range cur.Admins {
		if !gone[a.ID()] {
			admins = append(admins, a)
		}
	}
	for _, path := range add {
		k, err := readAdminPub(path)
		if err != nil {
			return nil, err
		}
		if cur.Admin(k.ID()) != nil {
			return nil, fmt.Errorf("--add %s: admin %s is already in the roster", path, k.ID())
		}
		admins = append(admins, k)
	}
	return admins, nil
}

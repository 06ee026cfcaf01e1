package main

import (
	"fmt"

	"github.com/moat-im/moat/keyserver/service"
	"github.com/spf13/cobra"
)

// Admin subcommands for users and the department tree
// (docs/spec/directory-api.md §Admin operations): each is one admin
// operation that changes the tenant's state, published at the next epoch
// as a new org chart (and, for remove-user, the user's timeline).

func orgTreeCmds(o *adminOptions) []*cobra.Command {
	return []*cobra.Command{newRemoveUserCmd(o), newAddDepartmentCmd(o), newMoveDepartmentCmd(o),
		newRenameDepartmentCmd(o), newRemoveDepartmentCmd(o), newSetDepartmentCmd(o), newCancelCodeCmd(o)}
}

// newChangeCmd returns the subcommand of the admin operation op, whose
// body is in (filled in by the flags that flags defines) and whose answer
// is a service.OKResponse: it prints the department the operation created,
// if any, and the epoch that publishes the change.
func newChangeCmd(o *adminOptions, op, use, short, long string, in any, flags func(*cobra.Command)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   op + " " + use,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var out service.OKResponse
			if err := c.AdminOp(cmd.Context(), op, in, &out); err != nil {
				return err
			}
			if out.Department != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "department %s\n", out.Department)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pending-epoch %d\n", out.PendingEpoch)
			return nil
		},
	}
	flags(cmd)
	return cmd
}

func newRemoveUserCmd(o *adminOptions) *cobra.Command {
	var in service.UserRequest
	return newChangeCmd(o, "remove-user", "--user HEX", "Remove a user",
		`remove-user revokes every active device of the user (reason user-removed),
cancels its enrolment codes, removes it from the org chart and closes its
timeline with a user_removed entry. A removed user cannot be added again
under the same id.`,
		&in, func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&in.User, "user", "", "user id")
			cmd.MarkFlagRequired("user")
		})
}

func newAddDepartmentCmd(o *adminOptions) *cobra.Command {
	var in service.DepartmentRequest
	return newChangeCmd(o, "add-department", "--name NAME [--parent HEX] [--department HEX]", "Add a department",
		`add-department adds a department named NAME under --parent (default: top
level), with the id --department (default: random), and prints its id.`,
		&in, func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringVar(&in.Name, "name", "", "department name")
			cmd.MarkFlagRequired("name")
			f.StringVar(&in.Parent, "parent", "", "parent department id (default: top level)")
			f.StringVar(&in.Department, "department", "", "department id, 32 hex characters (default: random)")
		})
}

func newMoveDepartmentCmd(o *adminOptions) *cobra.Command {
	var in service.DepartmentRequest
	return newChangeCmd(o, "move-department", "--department HEX [--parent HEX]", "Move a department, with its sub-tree",
		`move-department moves a department and its sub-tree under --parent
(default: top level). A move under the department itself or one of its
descendants is refused.`,
		&in, func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringVar(&in.Department, "department", "", "department id")
			cmd.MarkFlagRequired("department")
			f.StringVar(&in.Parent, "parent", "", "new parent department id (default: top level)")
		})
}

func newRenameDepartmentCmd(o *adminOptions) *cobra.Command {
	var in service.DepartmentRequest
	return newChangeCmd(o, "rename-department", "--department HEX --name NAME", "Rename a department", "",
		&in, func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringVar(&in.Department, "department", "", "department id")
			cmd.MarkFlagRequired("department")
			f.StringVar(&in.Name, "name", "", "new name")
			cmd.MarkFlagRequired("name")
		})
}

func newRemoveDepartmentCmd(o *adminOptions) *cobra.Command {
	var in service.DepartmentRequest
	return newChangeCmd(o, "remove-department", "--department HEX", "Remove an empty department",
		`remove-department removes a department that has no sub-department and no
member; move or remove those first.`,
		&in, func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&in.Department, "department", "", "department id")
			cmd.MarkFlagRequired("department")
		})
}

func newSetDepartmentCmd(o *adminOptions) *cobra.Command {
	var in service.DepartmentRequest
	return newChangeCmd(o, "set-department", "--user HEX [--department HEX]", "Move a user to a department (none without --department)", "",
		&in, func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringVar(&in.User, "user", "", "user id")
			cmd.MarkFlagRequired("user")
			f.StringVar(&in.Department, "department", "", "department id (empty: none)")
		})
}

func newCancelCodeCmd(o *adminOptions) *cobra.Command {
	var in service.CancelCodeRequest
	return newChangeCmd(o, "cancel-code", "--code-id HEX", "Cancel an unredeemed enrolment code",
		`cancel-code withdraws an enrolment code that has not been redeemed, by the
code id that issue-code printed; the code no longer enrols a device.`,
		&in, func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&in.CodeID, "code-id", "", "the code's id (issue-code's code-id)")
			cmd.MarkFlagRequired("code-id")
		})
}

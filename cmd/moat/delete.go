package main

import (
	"fmt"

	"github.com/moat-im/moat/client"
	"github.com/spf13/cobra"
)

// Local deletion (client.DeleteMessage, client.DeleteConversation): this
// device forgets messages, destroying their keys in the sealed store;
// nothing is sent. Delete for everyone is send --delete.

func newDeleteLocalCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "delete-local USER MESSAGE...",
		Short: "Delete messages from this device's history only",
		Long: `delete-local deletes each MESSAGE (an id from history or watch) of the
conversation with USER from this device's sealed local store, destroying
its key so that the store's files can no longer give it up. Nothing is
sent: USER and this user's other devices keep their copies (to delete a
message for everyone, use moat send --delete).`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ids []client.MessageID
			for _, s := range args[1:] {
				id, err := client.ParseMessageID(s)
				if err != nil {
					return fmt.Errorf("message id %q: %w", s, err)
				}
				ids = append(ids, id)
			}
			d, u, err := g.openFor(cmd, args[0])
			if err != nil {
				return err
			}
			defer d.Close()
			for _, id := range ids {
				if err := d.DeleteMessage(u, id); err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", id)
			}
			return nil
		},
	}
}

func newDeleteConversationCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "delete-conversation USER",
		Short: "Delete the whole conversation with USER from this device",
		Long: `delete-conversation deletes every message of the conversation with USER
from this device's sealed local store, destroying their keys, and prints
how many it deleted. Nothing is sent; the contact, the session and a
disappearing-message timer stay, and new messages start a new history.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, u, err := g.openFor(cmd, args[0])
			if err != nil {
				return err
			}
			defer d.Close()
			n, err := d.DeleteConversation(u)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %d messages\n", n)
			return nil
		},
	}
}

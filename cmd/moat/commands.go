package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/spf13/cobra"
)

// enrolOptions are enrol's flags.
type enrolOptions struct {
	Server     string
	Code       string
	RelayKey   string
	Request    string // write the enrolment request here and stop (a device that needs approval)
	Approval   string // a device's approval of the request (moat approve)
	DeviceName string
}

func newEnrolCmd(g *globalOptions) *cobra.Command {
	o := &enrolOptions{}
	cmd := &cobra.Command{
		Use:   "enrol --data DIR --code CODE --relay-key KEY [--server URL] (--passphrase-file F | --key-file F)",
		Short: "Enrol this device with an enrolment code",
		Long: `enrol makes a new device of the code's user: it generates the device's
keys, redeems the code at the directory (--server), checks the answer (the
organisation's trust bundle against the code, the device certificate, the
first witness-cosigned checkpoint), creates the sealed local store in
--data, uploads the device's prekeys to the relay and prints the user and
device ids.

A user's second device needs the approval of one of the user's devices:
enrol --request FILE writes the device's enrolment request to FILE and
prints its fingerprint; on the existing device, moat approve --request
FILE --expect FINGERPRINT --out APPROVAL approves it; then enrol
--approval APPROVAL (with the same --data and code) finishes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.Data == "" {
				return errNoData
			}
			if o.Code == "" {
				return errors.New("--code is required")
			}
			code, err := org.ParseEnrolmentCodeText(strings.TrimSpace(o.Code))
			if err != nil {
				return fmt.Errorf("--code: %w", err)
			}
			return enrol(cmd, g, o, code)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Server, "server", "http://127.0.0.1:8440", "the Moat server's URL (moatd serve)")
	f.StringVar(&o.Code, "code", "", "the enrolment code (moat-enrol2:...) from an admin")
	f.StringVar(&o.RelayKey, "relay-key", "", "the relay's public key (moatd serve's DATA/relay/relay.pub), to detect a rolled-back relay")
	f.StringVar(&o.Request, "request", "", "write this device's enrolment request to this file, for moat approve on another device")
	f.StringVar(&o.Approval, "approval", "", "a file from moat approve on another device of the user")
	f.StringVar(&o.DeviceName, "device-name", "", "a name for this device, shown to the user's other devices")
	return cmd
}

var errNoData = errors.New("--data is required (or MOAT_DATA)")

func newWhoamiCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show this device's user, device and organisation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return whoami(cmd, g)
		},
	}
}

func newContactsCmd(g *globalOptions) *cobra.Command {
	var noVerify bool
	cmd := &cobra.Command{
		Use:   "contacts [--no-verify]",
		Short: "List the organisation's users by department, with their verification state",
		Long: `contacts lists the organisation's directory: its users, with their display
names and departments, from the CA-signed org chart verified against the
key directory. For each user it also looks the user's device keys up and
verifies them (one lookup per user): DEVICES is the number of usable
devices and VERIFIED the directory epoch they verified at, or "no", with
the reason below the table. --no-verify skips those lookups and shows the
last verification this device stored ("(stored)"), if any.

A user of the directory can be named by display name in the other
commands (send, verify, history, timeline), if the name is unique.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return contacts(cmd, g, noVerify)
		},
	}
	cmd.Flags().BoolVar(&noVerify, "no-verify", false, "list the org chart only; show the stored verification state")
	return cmd
}

// sendOptions are send's flags: the message's kind and attributes.
type sendOptions struct {
	Reply, Edit, Delete, React string
	Mentions                   []string
	TTL                        time.Duration
}

func newSendCmd(g *globalOptions) *cobra.Command {
	o := &sendOptions{}
	cmd := &cobra.Command{
		Use:   "send USER TEXT [--reply ID | --edit ID | --delete ID | --react ID] [--mention USER ...] [--ttl D]",
		Short: "Send an end-to-end encrypted message",
		Long: `send encrypts TEXT to every device of USER (a user id, or a display name
from moat contacts) and to this user's other devices, and prints the
message id. USER's devices must be verified through the key directory;
otherwise the message is refused and moat says why.

--reply ID sends TEXT as a reply to message ID; --edit ID replaces the text
of this user's message ID; --delete ID deletes message ID for everyone (no
TEXT); --react ID sends TEXT (an emoji) as a reaction to message ID.
--mention USER mentions a user (repeatable). --ttl D first sets the
conversation's disappearing-message timer to D (whole seconds; 0 turns it
off), for both sides: from then on every message of the conversation is
destroyed D after it arrives.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.Delete != "" {
				return cobra.ExactArgs(1)(cmd, args)
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			for _, s := range []string{o.Reply, o.Edit, o.Delete, o.React} {
				if s != "" {
					n++
				}
			}
			if n > 1 {
				return errors.New("give at most one of --reply, --edit, --delete and --react")
			}
			if o.TTL > 0 && o.TTL%time.Second != 0 {
				return errors.New("--ttl must be whole seconds")
			}
			text := ""
			if len(args) == 2 {
				text = args[1]
			}
			return send(cmd, g, o, args[0], text)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Reply, "reply", "", "reply to this message id")
	f.StringVar(&o.Edit, "edit", "", "replace the text of this message id")
	f.StringVar(&o.Delete, "delete", "", "delete this message id for everyone")
	f.StringVar(&o.React, "react", "", "react to this message id with TEXT")
	f.StringArrayVar(&o.Mentions, "mention", nil, "mention this user (repeatable)")
	f.DurationVar(&o.TTL, "ttl", -1, "set the conversation's disappearing-message timer first (0: off)")
	return cmd
}

func newSendFileCmd(g *globalOptions) *cobra.Command {
	var caption string
	cmd := &cobra.Command{
		Use:   "send-file USER PATH [--caption TEXT]",
		Short: "Send a file, encrypted, as an attachment",
		Long: `send-file encrypts the file at PATH with a fresh key (chunked streaming
AEAD, docs/spec/attachments.md), uploads the ciphertext to the relay and
sends USER (a user id or a contact's display name) a message that carries
the file's name, size, reference and key, end-to-end encrypted to every
device of USER and to this user's other devices. It prints the message
id; the recipients fetch the file with moat get-file.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sendFile(cmd, g, args[0], args[1], caption)
		},
	}
	cmd.Flags().StringVar(&caption, "caption", "", "text sent with the file")
	return cmd
}

func newGetFileCmd(g *globalOptions) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "get-file MESSAGE --out PATH",
		Short: "Download and decrypt a received attachment",
		Long: `get-file downloads the attachment of message MESSAGE (an id from watch or
history), decrypts and authenticates it while streaming, and writes it to
PATH (a new file; nothing is left at PATH if the file fails to
authenticate).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			return getFile(cmd, g, args[0], out)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the file here")
	return cmd
}

func newSyncCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "sync",
		Short: "Fetch and decrypt what is waiting at the relay, print it, and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return watch(cmd, g, false, 0)
		},
	}
}

func newWatchCmd(g *globalOptions) *cobra.Command {
	var count int
	cmd := &cobra.Command{
		Use:   "watch [--count N]",
		Short: "Print events (messages, receipts, security events) as they arrive, until interrupted",
		Long: `watch fetches what is waiting, then stays connected to the relay's push
channel and prints every event as it arrives, one per line, until SIGINT
or SIGTERM, or (with --count) until N messages have arrived.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count < 0 {
				return errors.New("--count must not be negative")
			}
			return watch(cmd, g, true, count)
		},
	}
	cmd.Flags().IntVar(&count, "count", 0, "exit once this many new messages have arrived (0: run until interrupted)")
	return cmd
}

func newHistoryCmd(g *globalOptions) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history USER [--limit N]",
		Short: "Show the conversation with USER from the local store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return history(cmd, g, args[0], limit)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "show only the last N messages (0: all)")
	return cmd
}

func newSearchCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "search QUERY",
		Short: "Search the local history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return search(cmd, g, args[0])
		},
	}
}

func newVerifyCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "verify USER",
		Short: "Show USER's verification state: verified device keys, fingerprints, safety number",
		Long: `verify looks USER up in the key directory and verifies the answer (the
VRF and inclusion proofs, the witness-cosigned checkpoint, the org CA's
certificates), then prints each device with its key fingerprint and the
safety number to compare with USER in person. It exits with status 2 if
USER is not verified.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return verify(cmd, g, args[0])
		},
	}
}

func newTimelineCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "timeline [USER]",
		Short: "Show a user's security timeline: devices added, recovered and revoked",
		Long: `timeline verifies the whole history of a user's label in the key
directory and prints every entry of the user's timeline (docs/spec/org.md
§Timeline): the user added, each device added, recovered by admins or
revoked, with the epoch that published it and who made the change.

Without USER it shows this user's own timeline, then checks the label for
changes no device of the user made (alert lines). A device that finds
itself revoked there wipes its local store. With USER (a user id or a
contact's display name) it shows that contact's timeline.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			user := ""
			if len(args) == 1 {
				user = args[0]
			}
			return timeline(cmd, g, user)
		},
	}
}

// approveOptions are approve's flags.
type approveOptions struct {
	Request, Expect, Out string
}

func newApproveCmd(g *globalOptions) *cobra.Command {
	o := &approveOptions{}
	cmd := &cobra.Command{
		Use:   "approve --request FILE --expect FINGERPRINT --out FILE",
		Short: "Approve a new device of this user (its enrolment request from moat enrol --request)",
		Long: `approve signs, with this device's identity key, an approval of a new
device's enrolment request (docs/spec/org.md §Dual control) and writes it
to --out for the new device's enrol --approval. Compare the fingerprint
that the new device printed and give it as --expect: a request with any
other fingerprint is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Request == "" || o.Expect == "" || o.Out == "" {
				return errors.New("--request, --expect and --out are required")
			}
			return approve(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Request, "request", "", "the new device's enrolment request")
	f.StringVar(&o.Expect, "expect", "", "the fingerprint the new device shows")
	f.StringVar(&o.Out, "out", "", "write the approval here")
	return cmd
}

func newWipeCmd(g *globalOptions) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "wipe --instruction FILE",
		Short: "Act on the organisation's wipe instruction for this revoked device",
		Long: `wipe verifies a wipe instruction (moatd admin revoke-device --wipe-out)
under the organisation's CA key pinned at enrolment: it must name this
tenant, this device and its current certificate. If it does, the local
store's keys and records are destroyed and the device is unusable;
anything else is refused with the store untouched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("--instruction is required")
			}
			return wipe(cmd, g, file)
		},
	}
	cmd.Flags().StringVar(&file, "instruction", "", "the signed wipe instruction")
	return cmd
}

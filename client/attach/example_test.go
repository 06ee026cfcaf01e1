package attach_test

import (
	"context"
	"os"

	"github.com/moat-im/moat/client/attach"
	"github.com/moat-im/moat/server/relay"
)

// The sender uploads a file and sends the reference's encoding inside an
// end-to-end encrypted message; the recipient parses it and downloads into
// a temporary file, which it keeps only if Download succeeds.
func Example() {
	ctx := context.Background()
	var dev *relay.Client // the sender's device client (Device set)

	f, _ := os.Open("report.pdf")
	defer f.Close()
	st, _ := f.Stat()
	ref, err := attach.Upload(ctx, dev, f, st.Size(), nil)
	if err != nil {
		return
	}
	wire, _ := ref.Marshal() // 121 bytes for the message layer, with the name and media type

	var anyClient *relay.Client // the recipient's client; downloads need no credentials
	got, err := attach.ParseReference(wire)
	if err != nil {
		return
	}
	tmp, _ := os.CreateTemp(".", ".download-*")
	if err := attach.Download(ctx, anyClient, got, tmp, nil); err != nil {
		tmp.Close()
		os.Remove(tmp.Name()) // a prefix of authenticated segments at most: discard it
		return
	}
	tmp.Close()
	os.Rename(tmp.Name(), "report.pdf")
}

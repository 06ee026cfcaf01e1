package relay

import "regexp"

// hexRun is a run of 16 or more hexadecimal digits: a mailbox id, a store
// key or a token printed with %x.
var hexRun = regexp.MustCompile(`[0-9a-fA-F]{16,}`)

// redactErr is err's text for a log line with every long hexadecimal run
// replaced: a store's error may name a record by its key, which holds a
// mailbox id, and the relay's logs name no mailbox (SECURITY.md §Relay
// metadata). The error class stays readable.
func redactErr(err error) string {
	if err == nil {
		return ""
	}
	return hexRun.ReplaceAllString(err.Error(), "[redacted]")
}

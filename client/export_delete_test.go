package client

// MsgKindOf is the store kind of the message records of the conversation
// with u (state.go), for tests that read the store's files.
func MsgKindOf(u UserID) string { return msgKind(u) }

module github.com/moat-im/moat

go 1.26.4

require (
	filippo.io/edwards25519 v1.2.0
	github.com/c2sp/wycheproof v0.0.0-20260902155932-3fa63dd0344a
	github.com/cloudflare/circl v1.6.5
	golang.org/x/crypto v0.58.0
)

require golang.org/x/sys v0.49.0 // indirect

// Package service is Moat's key directory service (docs/spec/directory-api.md):
// it runs the directory of docs/spec/directory.md for one or more tenants,
// each with its own store (store.DirectoryStore), log, map, keys and
// witnesses, and serves it over a versioned HTTP API.
//
// A Tenant wires the components exactly as keyserver/kt/kttest does for
// one tenant in memory: org.Tenant for the admin state machine, VRF labels
// (crypto/vrf through kt), the verifiable map (keyserver/vmap) and the log
// (crypto/tlog) over the store, with store.TreeStore making the log append
// part of the epoch's single durable commit. PublishEpoch commits an
// epoch, then has the tenant's witnesses cosign its checkpoint over the
// C2SP tlog-witness protocol (WitnessClient; HTTPWitness). Readers are
// served the latest checkpoint that a witness quorum cosigned, and every
// proof is built at that checkpoint's last epoch.
//
// Service.Run publishes epochs on a cadence and on demand, and has the
// witnesses cosign unchanged checkpoints again more often than clients'
// MaxAge. Service.Handler is the HTTP API: public trust bundle, checkpoint
// and consistency endpoints; lookups and histories signed by an active
// device of the tenant (a VRF proof reveals whom it is for); enrolment
// authenticated by the enrolment code; admin operations signed by an admin
// of the tenant's roster, with a timestamp and a nonce against replay.
// Every /v1 request is rate-limited per client address and per tenant.
// Admin changes, enrolments and failed redemptions are answered once the
// records they changed are durable as the store's pending records
// (journal.go: one write and one sync per batch of concurrent
// operations); the next epoch publishes them.
//
// The CA and log keys rotate under dual control (rotate.go,
// docs/spec/directory-api.md §Key rotations): the new key comes from the
// tenant's KeyStore (FileKeyStore keeps a key file), M admins approve the
// trust bundle naming it, and the epoch that publishes it signs with the
// old log key and announces the new one to the witnesses.
package service

package mls

import (
	"bytes"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// Extension is one entry of an extension list (RFC 9420 §7.2, §13).
// Extensions of a type this package does not know are kept as opaque data
// and re-encoded unchanged (§13.4: unknown extensions are ignored).
type Extension struct {
	Type ExtensionType
	Data []byte // extension_data<V>
}

// Extensions is an extension list, Extension extensions<V>. A list holds at
// most one extension of each type (§13.4); decoders refuse duplicates with
// ErrDuplicateExtension and encoders refuse to write them.
type Extensions []Extension

// Find returns the data of the extension of type t, if present.
func (e Extensions) Find(t ExtensionType) ([]byte, bool) {
	for i := range e {
		if e[i].Type == t {
			return e[i].Data, true
		}
	}
	return nil, false
}

// Has reports whether the list holds an extension of type t.
func (e Extensions) Has(t ExtensionType) bool {
	_, ok := e.Find(t)
	return ok
}

// Equal reports whether e and o encode identically.
func (e Extensions) Equal(o Extensions) bool {
	return slices.EqualFunc(e, o, func(a, b Extension) bool { return a.Type == b.Type && bytes.Equal(a.Data, b.Data) })
}

// duplicate reports whether two entries share a type. Lists are bounded by
// MaxExtensions, so the quadratic scan is at most 32,640 comparisons.
func (e Extensions) duplicate() bool {
	for i := range e {
		for j := i + 1; j < len(e); j++ {
			if e[i].Type == e[j].Type {
				return true
			}
		}
	}
	return false
}

func (e Extensions) marshal(b *cryptobyte.Builder, field string) {
	if e.duplicate() {
		encodeFail(b, field, ErrDuplicateExtension)
		return
	}
	addList(b, field, e, MaxExtensions, func(b *cryptobyte.Builder, x *Extension) {
		b.AddUint16(uint16(x.Type))
		addOpaque(b, field+".extension_data", x.Data, maxOpaque)
	})
}

func readExtensions(d *decoder, field string) Extensions {
	e := Extensions(readList(d, field, MaxExtensions, func(d *decoder) Extension {
		return Extension{
			Type: ExtensionType(d.u16(field + ".extension_type")),
			Data: d.opaque(field+".extension_data", maxOpaque),
		}
	}))
	if e.duplicate() {
		d.fail(field, ErrDuplicateExtension)
		return nil
	}
	return e
}

// DecodeExtensions parses Extension extensions<V>.
func DecodeExtensions(b []byte) (Extensions, error) {
	var e Extensions
	err := decode("Extensions", b, func(d *decoder) { e = readExtensions(d, "extensions") })
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Encode returns the encoding of the list as Extension extensions<V>.
func (e Extensions) Encode() ([]byte, error) {
	return encode("Extensions", func(b *cryptobyte.Builder) { e.marshal(b, "extensions") })
}

// Extension payloads (§5.3.3, §11.1, §12.1.8.1, §12.4.3.2, §12.4.3.3).

// ApplicationID is the application_id extension's payload (§5.3.3),
// opaque application_id<V>. It is not authenticated by the AS.
type ApplicationID []byte

// DecodeApplicationID parses the application_id extension's data.
func DecodeApplicationID(b []byte) (ApplicationID, error) {
	var v []byte
	err := decode("application_id", b, func(d *decoder) { v = d.opaque("application_id", maxOpaque) })
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Encode returns the application_id extension's data.
func (a ApplicationID) Encode() ([]byte, error) {
	return encode("application_id", func(b *cryptobyte.Builder) { addOpaque(b, "application_id", a, maxOpaque) })
}

// RequiredCapabilities is the required_capabilities GroupContext
// extension (§11.1).
type RequiredCapabilities struct {
	ExtensionTypes  []ExtensionType  // extension_types<V>
	ProposalTypes   []ProposalType   // proposal_types<V>
	CredentialTypes []CredentialType // credential_types<V>
}

func (r *RequiredCapabilities) marshal(b *cryptobyte.Builder) {
	addU16List(b, "extension_types", r.ExtensionTypes, MaxCapabilityEntries)
	addU16List(b, "proposal_types", r.ProposalTypes, MaxCapabilityEntries)
	addU16List(b, "credential_types", r.CredentialTypes, MaxCapabilityEntries)
}

func (r *RequiredCapabilities) unmarshal(d *decoder) {
	r.ExtensionTypes = readU16List[ExtensionType](d, "extension_types", MaxCapabilityEntries)
	r.ProposalTypes = readU16List[ProposalType](d, "proposal_types", MaxCapabilityEntries)
	r.CredentialTypes = readU16List[CredentialType](d, "credential_types", MaxCapabilityEntries)
}

// Encode returns the extension data.
func (r *RequiredCapabilities) Encode() ([]byte, error) {
	return encode("RequiredCapabilities", r.marshal)
}

// DecodeRequiredCapabilities parses the required_capabilities extension's
// data.
func DecodeRequiredCapabilities(b []byte) (*RequiredCapabilities, error) {
	r := new(RequiredCapabilities)
	if err := decode("RequiredCapabilities", b, r.unmarshal); err != nil {
		return nil, err
	}
	return r, nil
}

// ExternalPub is the external_pub GroupInfo extension (§12.4.3.2): the HPKE
// key external joiners encrypt to.
type ExternalPub struct {
	ExternalPub HPKEPublicKey
}

// Encode returns the extension data.
func (e *ExternalPub) Encode() ([]byte, error) {
	return encode("ExternalPub", func(b *cryptobyte.Builder) { addOpaque(b, "external_pub", e.ExternalPub, MaxKeySize) })
}

// DecodeExternalPub parses the external_pub extension's data.
func DecodeExternalPub(b []byte) (*ExternalPub, error) {
	e := new(ExternalPub)
	err := decode("ExternalPub", b, func(d *decoder) { e.ExternalPub = d.opaque("external_pub", MaxKeySize) })
	if err != nil {
		return nil, err
	}
	return e, nil
}

// ExternalSender is one entry of the external_senders GroupContext
// extension (§12.1.8.1).
type ExternalSender struct {
	SignatureKey SignaturePublicKey
	Credential   Credential
}

// ExternalSenders is the external_senders extension's payload,
// ExternalSender external_senders<V>; Sender.Index of an external sender
// indexes it.
type ExternalSenders []ExternalSender

// maxExternalSenders bounds the entries of external_senders.
const maxExternalSenders = MaxExtensions

// Encode returns the extension data.
func (e ExternalSenders) Encode() ([]byte, error) {
	return encode("ExternalSenders", func(b *cryptobyte.Builder) {
		addList(b, "external_senders", e, maxExternalSenders, func(b *cryptobyte.Builder, s *ExternalSender) {
			addOpaque(b, "external_senders.signature_key", s.SignatureKey, MaxKeySize)
			s.Credential.marshal(b)
		})
	})
}

// DecodeExternalSenders parses the external_senders extension's data.
func DecodeExternalSenders(b []byte) (ExternalSenders, error) {
	var e ExternalSenders
	err := decode("ExternalSenders", b, func(d *decoder) {
		e = readList(d, "external_senders", maxExternalSenders, func(d *decoder) ExternalSender {
			var s ExternalSender
			s.SignatureKey = d.opaque("external_senders.signature_key", MaxKeySize)
			s.Credential.unmarshal(d)
			return s
		})
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

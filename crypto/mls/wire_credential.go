package mls

import (
	"bytes"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// Credential binds identities to a signature key (RFC 9420 §5.3).
//
// Exactly one body field is used, chosen by Type: Identity for
// CredentialTypeBasic, Certificates for CredentialTypeX509, Data for an
// application-defined type whose body is a single opaque<V> (today only
// CredentialTypeMoatOrg). Any other type cannot be parsed — its body has
// no length prefix — and is refused with ErrInvalidValue, as §13.5 foresees
// for credential_type.
type Credential struct {
	Type         CredentialType
	Identity     []byte   // basic: opaque identity<V>
	Certificates [][]byte // x509: Certificate certificates<V>, each cert_data<V>, end-entity first
	Data         []byte   // application-defined: opaque credential_data<V>
}

// opaqueCredentialType reports the application-defined credential types
// whose body is one opaque<V>.
func opaqueCredentialType(t CredentialType) bool { return t == CredentialTypeMoatOrg }

// Equal reports whether c and o encode identically.
func (c *Credential) Equal(o *Credential) bool {
	return c.Type == o.Type && bytes.Equal(c.Identity, o.Identity) && bytes.Equal(c.Data, o.Data) &&
		slices.EqualFunc(c.Certificates, o.Certificates, bytes.Equal)
}

func (c *Credential) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(c.Type))
	switch {
	case c.Type == CredentialTypeBasic:
		if c.Certificates != nil || c.Data != nil {
			encodeFail(b, "credential", ErrInvalidValue)
		}
		addOpaque(b, "credential.identity", c.Identity, maxOpaque)
	case c.Type == CredentialTypeX509:
		if c.Identity != nil || c.Data != nil {
			encodeFail(b, "credential", ErrInvalidValue)
		}
		addList(b, "credential.certificates", c.Certificates, MaxCertificates, func(b *cryptobyte.Builder, cert *[]byte) {
			addOpaque(b, "credential.certificates.cert_data", *cert, maxOpaque)
		})
	case opaqueCredentialType(c.Type):
		if c.Identity != nil || c.Certificates != nil {
			encodeFail(b, "credential", ErrInvalidValue)
		}
		addOpaque(b, "credential.credential_data", c.Data, maxOpaque)
	default:
		encodeFail(b, "credential.credential_type", ErrInvalidValue)
	}
}

func (c *Credential) unmarshal(d *decoder) {
	c.Type = CredentialType(d.u16("credential.credential_type"))
	switch {
	case c.Type == CredentialTypeBasic:
		c.Identity = d.opaque("credential.identity", maxOpaque)
	case c.Type == CredentialTypeX509:
		c.Certificates = readList(d, "credential.certificates", MaxCertificates, func(d *decoder) []byte {
			return d.opaque("credential.certificates.cert_data", maxOpaque)
		})
	case opaqueCredentialType(c.Type):
		c.Data = d.opaque("credential.credential_data", maxOpaque)
	default:
		d.fail("credential.credential_type", ErrInvalidValue)
	}
}

// Encode returns the §5.3 encoding of c.
func (c *Credential) Encode() ([]byte, error) { return encode("Credential", c.marshal) }

// DecodeCredential parses a Credential.
func DecodeCredential(b []byte) (*Credential, error) {
	c := new(Credential)
	if err := decode("Credential", b, c.unmarshal); err != nil {
		return nil, err
	}
	return c, nil
}

// OrgCredential is the body of a CredentialTypeMoatOrg credential
// (docs/spec/mls-profile.md "Credential type"): it names the device
// certificate (docs/spec/org.md §Device certificates) that certifies the
// leaf's signature key. The certificate itself is not carried: the
// CredentialValidator fetches it with the user's key-transparency proof,
// which keeps each leaf 60 bytes of credential instead of 3.6 KB.
//
//	struct {
//	    uint8  version = 1;
//	    opaque tenant[16];
//	    opaque user[16];
//	    opaque device[16];
//	    uint64 serial;
//	} OrgCredential;
type OrgCredential struct {
	Tenant [16]byte
	User   [16]byte
	Device [16]byte
	Serial uint64
}

// orgCredentialVersion is OrgCredential.version.
const orgCredentialVersion = 1

func (o *OrgCredential) marshal(b *cryptobyte.Builder) {
	b.AddUint8(orgCredentialVersion)
	b.AddBytes(o.Tenant[:])
	b.AddBytes(o.User[:])
	b.AddBytes(o.Device[:])
	b.AddUint64(o.Serial)
}

// Credential returns o as a CredentialTypeMoatOrg Credential.
func (o *OrgCredential) Credential() (Credential, error) {
	data, err := encode("OrgCredential", o.marshal)
	if err != nil {
		return Credential{}, err
	}
	return Credential{Type: CredentialTypeMoatOrg, Data: data}, nil
}

// DecodeOrgCredential parses the body of a CredentialTypeMoatOrg
// credential, refusing another credential type with ErrInvalidValue, and
// an unknown version, a zero identifier or a zero serial with
// ErrMalformed.
func DecodeOrgCredential(c *Credential) (*OrgCredential, error) {
	if c.Type != CredentialTypeMoatOrg {
		return nil, &DecodeError{Struct: "OrgCredential", Field: "credential_type", Err: ErrInvalidValue}
	}
	o := new(OrgCredential)
	err := decode("OrgCredential", c.Data, func(d *decoder) {
		if v := d.u8("version"); d.ok() && v != orgCredentialVersion {
			d.fail("version", ErrInvalidValue)
			return
		}
		copy(o.Tenant[:], d.fixed("tenant", 16))
		copy(o.User[:], d.fixed("user", 16))
		copy(o.Device[:], d.fixed("device", 16))
		o.Serial = d.u64("serial")
		if d.ok() && (o.Tenant == [16]byte{} || o.User == [16]byte{} || o.Device == [16]byte{} || o.Serial == 0) {
			d.fail("OrgCredential", ErrMalformed)
		}
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

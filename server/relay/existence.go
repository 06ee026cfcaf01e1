package relay

import (
	"encoding/hex"

	"github.com/moat-im/moat/crypto/deliverytoken"
)

// Existence hiding (docs/spec/api.md §Existence). A caller that holds no
// valid token for a mailbox learns nothing about whether the mailbox, its
// device or its tenant exists: every send is checked against its token
// before the device directory is asked, and an anonymous token whose
// tenant or key the relay does not know is verified against a decoy key,
// so that it costs the same RSA verification as one under a real key.

// decoyIssuerSPKI is a 2048-bit issuer public key whose private key was
// discarded when it was generated: no token verifies under it.
const decoyIssuerSPKI = "" +
	"30820156304106092a864886f70d01010a3034a00f300d060960864801650304" +
	"02020500a11c301a06092a864886f70d010108300d0609608648016503040202" +
	"0500a2030201300382010f003082010a0282010100cf1c8257d6e91979643041" +
	"6d59dd4dd71ccfe3aa19ffb9c02a2ffe3fc49207236db190463cda7ba409e47f" +
	"a360c20885869b7703ea1e07560a0dfb5a14ef57110c7beb8a83f9ec604e00fc" +
	"6c460d29901febb589e1a6cd6179378d44cebc7c8fc174109f60420883943eb0" +
	"96a7ae4b2d3eb3497f7c9274db2a98b783f6005b6c740f8f8d300877c6863d51" +
	"b46378ec9fd98c43a979a2085ca7457790cd003e254703fc6fd53b5fcedcab6a" +
	"c605653b1641495a19de7be705ae87099ee85d49fb879da029fd2fc6ef6b5255" +
	"b205d400296a6bf91d66e8dc71dc8bf1569a47869e7973436925a85ffc555eff" +
	"0561176943199f673e40871afa05a0471537154c430203010001"

var decoyIssuer = func() *deliverytoken.IssuerPublicKey {
	b, err := hex.DecodeString(decoyIssuerSPKI)
	if err != nil {
		panic(err)
	}
	k, err := deliverytoken.ParseIssuerPublicKey(b)
	if err != nil {
		panic(err)
	}
	return k
}()

// uniformIssuers answers the decoy key for an unknown tenant or key id.
type uniformIssuers struct{ deliverytoken.IssuerKeys }

func (u uniformIssuers) IssuerKey(tenant [16]byte, keyID [32]byte) *deliverytoken.IssuerPublicKey {
	if k := u.IssuerKeys.IssuerKey(tenant, keyID); k != nil {
		return k
	}
	return decoyIssuer
}

// hideAbsence wraps the relay's issuer keys; nil stays nil (the relay
// then refuses every anonymous token at once, whatever the mailbox).
func hideAbsence(k deliverytoken.IssuerKeys) deliverytoken.IssuerKeys {
	if k == nil {
		return nil
	}
	return uniformIssuers{k}
}

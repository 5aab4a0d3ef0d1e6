package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	ita "github.com/in-toto/attestation/go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sourceos/sourceosctl/internal/cause"
)

// Verification checks, in the order Verify runs them; a failure names the first that fails.
const (
	CheckBundle     = "bundle"       // attestation.sigstore.json parses as a Sigstore bundle v0.3
	CheckEnvelope   = "envelope"     // attestation.intoto.json is the bundle's envelope
	CheckSignature  = "signature"    // the DSSE signature verifies with the given key
	CheckStatement  = "statement"    // the verified payload is a strict in-toto Statement v1
	CheckPredicate  = "predicate"    // our predicate type, valid against its schema
	CheckArtifacts  = "artifacts"    // every artifact exists and matches its digest
	CheckUnreferenc = "unreferenced" // no file in artifacts/ is left unsigned
)

// VerifyError names the check that failed.
type VerifyError struct {
	Check  string
	Detail string
}

func (e *VerifyError) Error() string { return fmt.Sprintf("%s check failed: %s", e.Check, e.Detail) }

// Verified is a bundle that passed every check.
type Verified struct {
	Statement *Statement
	Dir       string
}

// Verify checks the bundle in dir with the verifier's key.
func Verify(dir string, v signature.Verifier) (*Verified, error) {
	raw, err := os.ReadFile(filepath.Join(dir, BundleFile))
	if err != nil {
		return nil, &VerifyError{CheckBundle, err.Error()}
	}
	var b protobundle.Bundle
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(raw, &b); err != nil {
		return nil, &VerifyError{CheckBundle, "not a Sigstore bundle: " + err.Error()}
	}
	if b.MediaType != BundleMediaType {
		return nil, &VerifyError{CheckBundle, fmt.Sprintf("media type %q, want %q", b.MediaType, BundleMediaType)}
	}
	pe := b.GetDsseEnvelope()
	if pe == nil || len(pe.Signatures) == 0 {
		return nil, &VerifyError{CheckBundle, "no signed DSSE envelope in the bundle"}
	}
	env := Envelope{PayloadType: pe.PayloadType, Payload: base64.StdEncoding.EncodeToString(pe.Payload)}
	for _, s := range pe.Signatures {
		env.Signatures = append(env.Signatures, EnvSignature{KeyID: s.Keyid, Sig: base64.StdEncoding.EncodeToString(s.Sig)})
	}
	if err := sameEnvelope(dir, env); err != nil {
		return nil, err
	}
	if env.PayloadType != PayloadType {
		return nil, &VerifyError{CheckSignature, fmt.Sprintf("payload type %q, want %q", env.PayloadType, PayloadType)}
	}
	envJSON, _ := json.Marshal(env)
	if err := sigdsse.WrapVerifier(v).VerifySignature(bytes.NewReader(envJSON), nil); err != nil {
		return nil, &VerifyError{CheckSignature, "the signature does not verify with this key: " + err.Error()}
	}
	// From here on only the verified bytes are read.
	stmt, err := parseStatement(pe.Payload)
	if err != nil {
		return nil, err
	}
	if err := checkArtifacts(dir, stmt); err != nil {
		return nil, err
	}
	return &Verified{Statement: stmt, Dir: dir}, nil
}

func sameEnvelope(dir string, env Envelope) error {
	raw, err := os.ReadFile(filepath.Join(dir, EnvelopeFile))
	if err != nil {
		return &VerifyError{CheckEnvelope, err.Error()}
	}
	var bare Envelope
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&bare); err != nil {
		return &VerifyError{CheckEnvelope, "not a DSSE envelope: " + err.Error()}
	}
	a, _ := json.Marshal(bare)
	b, _ := json.Marshal(env)
	if !bytes.Equal(a, b) {
		return &VerifyError{CheckEnvelope, EnvelopeFile + " differs from the envelope in " + BundleFile}
	}
	return nil
}

// parseStatement parses strictly, the way stock in-toto verifiers do, then into our types.
func parseStatement(payload []byte) (*Statement, error) {
	var st ita.Statement
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(payload, &st); err != nil {
		return nil, &VerifyError{CheckStatement, "not an in-toto Statement v1: " + err.Error()}
	}
	if err := st.Validate(); err != nil {
		return nil, &VerifyError{CheckStatement, err.Error()}
	}
	if st.PredicateType != PredicateType {
		return nil, &VerifyError{CheckPredicate, fmt.Sprintf("predicate type %q, want %q", st.PredicateType, PredicateType)}
	}
	var generic struct {
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &generic); err != nil {
		return nil, &VerifyError{CheckStatement, err.Error()}
	}
	if err := validatePredicateJSON(generic.Predicate); err != nil {
		return nil, &VerifyError{CheckPredicate, err.Error()}
	}
	var out Statement
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, &VerifyError{CheckPredicate, err.Error()}
	}
	return &out, nil
}

func checkArtifacts(dir string, st *Statement) error {
	referenced := map[string]bool{}
	for _, s := range st.Subject {
		want, ok := s.Digest["sha256"]
		if !ok {
			continue
		}
		if !strings.HasPrefix(s.Name, ArtifactsDir+"/") || strings.Contains(s.Name, "..") {
			return &VerifyError{CheckArtifacts, fmt.Sprintf("subject %q is not a file in %s/", s.Name, ArtifactsDir)}
		}
		referenced[strings.TrimPrefix(s.Name, ArtifactsDir+"/")] = true
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(s.Name)))
		if err != nil {
			return &VerifyError{CheckArtifacts, s.Name + ": " + cause.Root(err).Error()}
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			return &VerifyError{CheckArtifacts, fmt.Sprintf("%s has sha256 %s, the statement says %s", s.Name, got, want)}
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, ArtifactsDir))
	if err != nil {
		return &VerifyError{CheckArtifacts, cause.Root(err).Error()}
	}
	var extra []string
	for _, e := range entries {
		if !referenced[e.Name()] || !e.Type().IsRegular() {
			extra = append(extra, ArtifactsDir+"/"+e.Name())
		}
	}
	// Beside artifacts/, only the two attestation files (which carry the signature) and the
	// session log's inclusion proof (which carries its own) belong.
	top, err := os.ReadDir(dir)
	if err != nil {
		return &VerifyError{CheckArtifacts, cause.Root(err).Error()}
	}
	for _, e := range top {
		switch name := e.Name(); {
		case name == ArtifactsDir && e.IsDir(), (name == BundleFile || name == EnvelopeFile || name == InclusionFile) && e.Type().IsRegular():
		default:
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return &VerifyError{CheckUnreferenc, "files not covered by the signature: " + strings.Join(extra, ", ")}
	}
	return nil
}

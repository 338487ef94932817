package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/delta/sign"
	"github.com/skiff-dev/skiff/internal/atomicfile"
)

// trustedKeysEnv lists trusted public key files, comma-separated, in
// addition to --trust.
const trustedKeysEnv = "SKIFF_TRUSTED_KEYS"

// trustOptions are the flags that say which delta signatures to accept.
type trustOptions struct {
	trust         []string
	allowUnsigned bool
}

func (o *trustOptions) AddFlags(cmd *cobra.Command, allowUnsigned bool) {
	fs := cmd.Flags()
	fs.StringArrayVar(&o.trust, "trust", nil, "trusted public key file (PEM, from skiff key generate); repeatable; also $"+trustedKeysEnv+" (comma-separated files)")
	if allowUnsigned {
		fs.BoolVar(&o.allowUnsigned, "allow-unsigned", false, "accept unsigned deltas (development only)")
	}
}

// files returns the --trust files and those of $SKIFF_TRUSTED_KEYS.
func (o *trustOptions) files() []string {
	out := append([]string(nil), o.trust...)
	for _, f := range strings.Split(os.Getenv(trustedKeysEnv), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// trust loads the trusted keys; with --allow-unsigned it warns on errOut.
func (o *trustOptions) load(errOut io.Writer) (format.Trust, error) {
	keys, err := sign.LoadPublicKeys(o.files()...)
	if err != nil {
		return format.Trust{}, err
	}
	if o.allowUnsigned {
		fmt.Fprintln(errOut, "warning: --allow-unsigned: unsigned deltas are accepted; their origin is not checked (development only)")
	}
	return format.Trust{Keys: keys, AllowUnsigned: o.allowUnsigned}, nil
}

// withTrustHint explains a refused signature in terms of the flags.
func withTrustHint(err error) error {
	if errors.Is(err, sign.ErrUnsigned) || errors.Is(err, sign.ErrUntrustedKey) {
		return fmt.Errorf("%w (trust the signer's public key with --trust KEY.pub or $%s; --allow-unsigned accepts unsigned deltas, for development)", err, trustedKeysEnv)
	}
	return err
}

// loadSigners reads private key files.
func loadSigners(paths []string) ([]crypto.Signer, error) {
	var out []crypto.Signer
	for _, p := range paths {
		k, err := sign.LoadPrivateKey(p)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func newKeyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage the keys that sign deltas",
		Args:  cobra.NoArgs,
	}
	var name string
	var format formatOptions
	gen := &cobra.Command{
		Use:   "generate -o NAME",
		Short: "Make an ed25519 key pair: NAME.key (private, 0600) and NAME.pub",
		Long: `Make an ed25519 key pair for signing deltas: NAME.key (PKCS#8 PEM, mode
0600: keep it on the build or rollout server) and NAME.pub (PKIX PEM: give it
to the devices as a trusted key). Prints the key ID, the first 16 hex digits
of the sha256 of the public key, which skiff inspect shows for signed deltas.
Existing files are not overwritten. openssl genpkey -algorithm ed25519 makes
keys skiff reads too.`,
		Example: `  skiff key generate -o release-2025`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := keyFilesName(name)
			if err != nil {
				return err
			}
			id, err := sign.GenerateKeyFiles(name, nil)
			if err != nil {
				return err
			}
			if format.json() {
				return printJSON(cmd.OutOrStdout(), struct {
					KeyID   string `json:"key_id"`
					Private string `json:"private"`
					Public  string `json:"public"`
				}{id.String(), name + ".key", name + ".pub"})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key %s: private %s.key, public %s.pub\n", id, name, name)
			return nil
		},
	}
	gen.Flags().StringVarP(&name, "output", "o", "", "name of the key files (NAME.key, NAME.pub; a .key or .pub suffix is dropped)")
	format.AddFlags(gen, legacyNone)
	cmd.AddCommand(gen)
	return cmd
}

// keyFilesName turns key generate's -o into the NAME of NAME.key and
// NAME.pub: "x.key" and "x.pub" mean x (not x.key.key), and "-" is refused
// (two files cannot go to standard output).
func keyFilesName(name string) (string, error) {
	switch name {
	case "":
		return "", usageError{"-o NAME is required"}
	case "-":
		return "", usageError{"-o -: key generate writes two files, NAME.key and NAME.pub, not standard output; give a NAME"}
	}
	for _, ext := range []string{".key", ".pub"} {
		if base, ok := strings.CutSuffix(name, ext); ok {
			if base == "" || strings.HasSuffix(base, "/") {
				return "", usageError{fmt.Sprintf("-o %s: give the NAME of NAME.key and NAME.pub", name)}
			}
			return base, nil
		}
	}
	return name, nil
}

type signOptions struct {
	keys    []string
	output  string
	replace bool
	format  formatOptions
}

func newSignCommand(g *globalOptions) *cobra.Command {
	o := &signOptions{}
	cmd := &cobra.Command{
		Use:   "sign DELTA --key KEYFILE [-o OUT]",
		Short: "Sign an existing delta",
		Long: `Add signatures to a delta: the header and blobs are kept byte for byte, so
signatures by other keys stay valid; a key that already signed is replaced.
With --replace, every earlier signature is dropped. The delta is rewritten in
place (or written to -o) through a temporary file and a rename.

During a key rotation, sign with the old and the new key until every device
trusts the new one (delta/FORMAT.md, "Trust model").`,
		Example: `  skiff sign update.skiff --key release.key
  skiff sign update.skiff --key old.key --key new.key -o signed.skiff`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSign(cmd.Context(), o, args[0], cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&o.keys, "key", nil, "private key file (PEM); repeatable")
	fs.StringVarP(&o.output, "output", "o", "", "where to write the signed delta (default: in place)")
	fs.BoolVar(&o.replace, "replace", false, "drop the existing signatures")
	o.format.AddFlags(cmd, legacyNone)
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func runSign(ctx context.Context, o *signOptions, path string, out io.Writer) error {
	signers, err := loadSigners(o.keys)
	if err != nil {
		return err
	}
	dst := o.output
	if dst == "" {
		dst = path
	}
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	w, err := atomicfile.Create(dst)
	if err != nil {
		return err
	}
	defer w.Abort()
	h, err := format.Resign(ctx, bufio.NewReaderSize(in, 1<<20), w, o.replace, signers...)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := w.Commit(); err != nil {
		return err
	}
	ids, _ := h.SignatureKeyIDs()
	if o.format.json() {
		return printJSON(out, struct {
			Output       string   `json:"output"`
			HeaderDigest string   `json:"header_digest"`
			SignedBy     []string `json:"signed_by"`
		}{dst, h.HeaderDigest().String(), ids})
	}
	fmt.Fprintf(out, "signed %s (header %s): keys %s\n", dst, h.HeaderDigest(), strings.Join(ids, ", "))
	return nil
}

// signerIDs lists the key IDs of signers.
func signerIDs(signers []crypto.Signer) []string {
	var out []string
	for _, s := range signers {
		if k, ok := s.Public().(ed25519.PublicKey); ok {
			out = append(out, sign.IDOf(k).String())
		}
	}
	return out
}

package pipeline

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/shadowtap/shadowtap/pkg/replay"
)

// HTTPS shadows (--ca-file, --client-cert, --client-key,
// --insecure-skip-verify) and load multiplication (--multiply): the flags
// become replay.Config.TLS, Multiply and TargetMultiply. Files are read at
// start, so a bad one is refused with one line before anything is attached.

// validateShadowTLS checks how the HTTPS and --multiply flags combine; the
// files themselves are read by replayConfig.
func (c *Config) validateShadowTLS() error {
	if (c.ClientCert == "") != (c.ClientKey == "") {
		return errors.New("--client-cert and --client-key go together: give both or neither")
	}
	if c.InsecureSkipVerify && c.CAFile != "" {
		return errors.New("--insecure-skip-verify and --ca-file contradict each other: --ca-file says which CAs to trust, --insecure-skip-verify trusts anyone; drop one")
	}
	if (c.CAFile != "" || c.ClientCert != "" || c.InsecureSkipVerify) && !c.hasHTTPSTarget() {
		return errors.New("--ca-file, --client-cert, --client-key and --insecure-skip-verify apply to https:// targets, and no --target or --baseline is https://")
	}
	if len(c.Multiply) > 0 && len(c.Targets) == 0 {
		return errors.New("--multiply needs a --target: it multiplies what is replayed")
	}
	return nil
}

func (c *Config) hasHTTPSTarget() bool {
	for _, t := range append([]string{c.Baseline}, c.Targets...) {
		if u, err := url.Parse(t); err == nil && u.Scheme == "https" {
			return true
		}
	}
	return false
}

// shadowTLSAndMultiply sets rc.TLS from the certificate flags and the
// multipliers from --multiply; rc.Targets and rc.Baseline are already set.
func shadowTLSAndMultiply(cfg Config, rc *replay.Config) error {
	tc, err := shadowTLS(cfg)
	if err != nil {
		return err
	}
	rc.TLS = tc
	return parseMultiply(cfg.Multiply, rc)
}

// shadowTLS builds the base TLS configuration of https targets; nil when no
// flag asks for anything but the system roots.
func shadowTLS(cfg Config) (*tls.Config, error) {
	if cfg.CAFile == "" && cfg.ClientCert == "" && !cfg.InsecureSkipVerify {
		return nil, nil
	}
	// The operator asked for it; replay.New logs a warning per target.
	tc := &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify}
	if cfg.CAFile != "" {
		pool, err := loadCAFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file %s: %w", cfg.CAFile, err)
		}
		tc.RootCAs = pool // instead of the system pool
	}
	if cfg.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientCert, cfg.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("--client-cert %s, --client-key %s: %w", cfg.ClientCert, cfg.ClientKey, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// loadCAFile reads a PEM bundle of CA certificates. Unlike
// x509.CertPool.AppendCertsFromPEM, it refuses a certificate block that
// does not parse, and a file without any.
func loadCAFile(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM CERTIFICATE block in it (a DER file? convert it with openssl x509 -inform der)")
	}
	return pool, nil
}

// parseMultiply reads --multiply items: F for every target (not the
// baseline), or URL=F for the target (or baseline) given with that URL.
func parseMultiply(items []string, rc *replay.Config) error {
	global := false
	for _, item := range items {
		spec, fs, perTarget := "", item, false
		if i := strings.LastIndexByte(item, '='); i >= 0 {
			spec, fs, perTarget = item[:i], item[i+1:], true
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(fs), 64)
		if err != nil || !(f > 0 && f <= replay.MaxMultiply) {
			return fmt.Errorf("--multiply %q: want a factor F with 0 < F <= %d (e.g. 0.5, 2, 3.5), or URL=F for one target", item, replay.MaxMultiply)
		}
		if !perTarget {
			if global {
				return fmt.Errorf("--multiply %q: the factor for every target is already given", item)
			}
			global, rc.Multiply = true, f
			continue
		}
		key := ""
		if u, err := url.Parse(strings.TrimSpace(spec)); err == nil {
			for _, t := range append(append([]*url.URL{}, rc.Targets...), rc.Baseline) {
				if t != nil && t.String() == u.String() {
					key = t.String()
				}
			}
		}
		if key == "" {
			return fmt.Errorf("--multiply %q: %q is not the URL of a --target or --baseline (spell it as given there)", item, spec)
		}
		if _, dup := rc.TargetMultiply[key]; dup {
			return fmt.Errorf("--multiply %q: %s already has a factor", item, spec)
		}
		if rc.TargetMultiply == nil {
			rc.TargetMultiply = map[string]float64{}
		}
		rc.TargetMultiply[key] = f
	}
	return nil
}

package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testCA(t *testing.T) (*CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateCA: %v", err)
	}
	return ca, dir
}

func TestCreateWritesFilesWithModes(t *testing.T) {
	ca, dir := testCA(t)
	for name, want := range map[string]os.FileMode{CertFile: 0o644, KeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %o, want %o", name, got, want)
		}
	}
	c := ca.Certificate()
	if c.Subject.CommonName != CommonName || !c.IsCA {
		t.Errorf("CA subject %q IsCA %v", c.Subject.CommonName, c.IsCA)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < 9*365*24*time.Hour {
		t.Errorf("CA lifetime %v, want about 10 years", life)
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, ca.CertPEM()) {
		t.Error("CertPEM differs from ca.pem")
	}
}

func TestReloadGivesSameCA(t *testing.T) {
	ca, dir := testCA(t)
	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !bytes.Equal(ca.CertPEM(), again.CertPEM()) {
		t.Fatal("reloaded CA certificate differs")
	}
	// A certificate issued by the reloaded CA verifies against the
	// original pool: same key.
	certPEM, _, err := again.IssueServerCert([]string{"x.example"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(t, ca.Pool(), certPEM, "x.example"); err != nil {
		t.Fatalf("cert from reloaded CA does not verify with original pool: %v", err)
	}
}

func verify(t *testing.T, pool *x509.CertPool, certPEM []byte, name string) error {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM in issued cert")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func TestIssuedCertVerifiesForItsNamesOnly(t *testing.T) {
	ca, _ := testCA(t)
	names := []string{"srv1.postgres.database.azure.com", "srv1.privatelink.postgres.database.azure.com"}
	certPEM, keyPEM, err := ca.IssueServerCert(names, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("issued pair does not load: %v", err)
	}
	pool := ca.Pool()
	for _, n := range append(names, "127.0.0.1") {
		if err := verify(t, pool, certPEM, n); err != nil {
			t.Errorf("verify %q: %v", n, err)
		}
	}
	for _, n := range []string{"srv2.postgres.database.azure.com", "postgres.database.azure.com", "127.0.0.2", "evil.example"} {
		if err := verify(t, pool, certPEM, n); err == nil {
			t.Errorf("verify %q succeeded, want failure", n)
		}
	}
	// Another CA does not vouch for it.
	other, _ := testCA(t)
	if err := verify(t, other.Pool(), certPEM, names[0]); err == nil {
		t.Error("cert verified against a foreign CA")
	}
}

func TestIssueRequiresNames(t *testing.T) {
	ca, _ := testCA(t)
	if _, _, err := ca.IssueServerCert(nil, nil, time.Hour); err == nil {
		t.Error("no names: want error")
	}
	if _, _, err := ca.IssueServerCert([]string{""}, nil, time.Hour); err == nil {
		t.Error("empty name: want error")
	}
}

func TestIPGivenAsName(t *testing.T) {
	ca, _ := testCA(t)
	certPEM, _, err := ca.IssueServerCert([]string{"10.0.0.7", "db.example"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"10.0.0.7", "db.example"} {
		if err := verify(t, ca.Pool(), certPEM, n); err != nil {
			t.Errorf("verify %s: %v", n, err)
		}
	}
}

func TestValidityCappedByCA(t *testing.T) {
	ca, _ := testCA(t)
	certPEM, _, err := ca.IssueServerCert([]string{"a.example"}, nil, 50*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.NotAfter.After(ca.Certificate().NotAfter) {
		t.Errorf("leaf NotAfter %v beyond CA NotAfter %v", c.NotAfter, ca.Certificate().NotAfter)
	}
}

func TestTLSHandshake(t *testing.T) {
	ca, _ := testCA(t)
	cert, err := ca.TLSCertificate([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_, err = io.WriteString(c, "ok")
		done <- err
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	b, err := io.ReadAll(conn)
	if err != nil || string(b) != "ok" {
		t.Fatalf("read %q, %v", b, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCorruptAndIncompleteFiles(t *testing.T) {
	_, dir := testCA(t)
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	_, otherDir := testCA(t)
	otherKey, err := os.ReadFile(filepath.Join(otherDir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		cert, key []byte // nil: file absent
		wantErr   string
	}{
		{"garbage cert", []byte("not pem"), keyPEM, "ca.pem: no PEM block"},
		{"garbage key", certPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "ca-key.pem: parse private key"},
		{"key in cert file", keyPEM, keyPEM, "want CERTIFICATE"},
		{"mismatched key", certPEM, otherKey, "does not hold the private key"},
		{"cert only", certPEM, nil, "ca-key.pem does not"},
		{"key only", nil, keyPEM, "ca.pem does not"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if tc.cert != nil {
				if err := os.WriteFile(filepath.Join(d, CertFile), tc.cert, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.key != nil {
				if err := os.WriteFile(filepath.Join(d, KeyFile), tc.key, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadOrCreateCA(d)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
			}
			// Nothing was overwritten.
			if tc.cert != nil {
				got, _ := os.ReadFile(filepath.Join(d, CertFile))
				if !bytes.Equal(got, tc.cert) {
					t.Error("ca.pem was modified")
				}
			}
		})
	}
}

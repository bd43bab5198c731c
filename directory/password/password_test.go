package password

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// pw is the password of most vectors below.
const pw = "s3cret-P@ss"

// vectors were made with tools independent of this package: Python's
// hashlib (digests), openssl passwd (-1, -5, -6, -apr1), perl's crypt (DES,
// glibc/libxcrypt), Python's crypt module (libxcrypt: bcrypt, sha-crypt with
// rounds=), libargon2's argon2*_hash_encoded and libsodium's
// crypto_pwhash_str_alg (what Dovecot calls) through ctypes.
var vectors = []struct {
	name, stored, plain string
}{
	// OpenLDAP / Dovecot digests, salt 0102030405060708.
	{"SSHA", "{SSHA}36T+CZy/LLJL94gOZ6WxairV8moBAgMEBQYHCA==", pw},
	{"SSHA unpadded", "{SSHA}36T+CZy/LLJL94gOZ6WxairV8moBAgMEBQYHCA", pw},
	{"SSHA lower-case name", "{ssha}36T+CZy/LLJL94gOZ6WxairV8moBAgMEBQYHCA==", pw},
	{"SSHA.HEX", "{SSHA.HEX}dfa4fe099cbf2cb24bf7880e67a5b16a2ad5f26a0102030405060708", pw},
	{"SHA", "{SHA}uxswpsvKU496R59Zl0/54NpvctY=", pw},
	{"SHA1", "{SHA1}uxswpsvKU496R59Zl0/54NpvctY=", pw},
	{"SHA.HEX", "{SHA.HEX}bb1b30a6cbca538f7a479f59974ff9e0da6f72d6", pw},
	{"SHA hex by length", "{SHA}bb1b30a6cbca538f7a479f59974ff9e0da6f72d6", pw},
	{"SSHA256", "{SSHA256}Lj7AKeRhpT7xilky3e9CWHMN5inbB1xHQpS8vJlWfiMBAgMEBQYHCA==", pw},
	{"SSHA512", "{SSHA512}oV0h09aiLkq3ruf2ZXDxgCZuFXvjp+AurH1wEkEm0IP1VQW5K2KHGV2o+VGsYQUCZ2yh4gflLmP0COS/Tlv1DQECAwQFBgcI", pw},
	{"SSHA512 mixed case", "{sSha512}oV0h09aiLkq3ruf2ZXDxgCZuFXvjp+AurH1wEkEm0IP1VQW5K2KHGV2o+VGsYQUCZ2yh4gflLmP0COS/Tlv1DQECAwQFBgcI", pw},
	{"SHA256", "{SHA256}lsqp/XFLsBLQdnU/kVVK9wEaIHk28CB+tNFXB7/f/+4=", pw},
	{"SHA512", "{SHA512}m4JlFrrZAWsBPD6zcMk3UW3wD7DExDu6naPUkIe6IcCPDQ/Vd9PW1M3Rzjsx0qZA0QNIfZ6KchbDs6kLTrr+LQ==", pw},
	{"MD5 base64 (OpenLDAP)", "{MD5}wr/edMvlnKajLGLWykEauQ==", pw},
	{"MD5.HEX", "{MD5.HEX}c2bfde74cbe59ca6a32c62d6ca411ab9", pw},
	{"PLAIN-MD5 hex", "{PLAIN-MD5}c2bfde74cbe59ca6a32c62d6ca411ab9", pw},
	{"LDAP-MD5", "{LDAP-MD5}wr/edMvlnKajLGLWykEauQ==", pw},
	{"SMD5", "{SMD5}igPhK3Iu9QqLQLPh7ySMmgECAwQFBgcI", pw},

	// md5-crypt, apr1 (openssl passwd).
	{"MD5 md5-crypt (Dovecot)", "{MD5}$1$saltsalt$Z0Sv5iAteV1M7ZtPV12kW0", pw},
	{"MD5-CRYPT", "{MD5-CRYPT}$1$saltsalt$Z0Sv5iAteV1M7ZtPV12kW0", pw},
	{"CRYPT md5-crypt", "{CRYPT}$1$saltsalt$Z0Sv5iAteV1M7ZtPV12kW0", pw},
	{"bare md5-crypt", "$1$saltsalt$Z0Sv5iAteV1M7ZtPV12kW0", pw},
	{"bare md5-crypt empty password", "$1$ab$rn6aQS/o7141mj179E/zA.", ""},
	{"bare md5-crypt 8-char salt", "$1$12345678$DKef2qpiMGR/kZbtD0qn3.", pw},
	{"apr1", "{CRYPT}$apr1$saltsalt$oGMGSDwnDdMYBRIkMeIO..", pw},

	// sha-crypt (openssl passwd -5/-6; libxcrypt for rounds=).
	{"sha256-crypt", "{CRYPT}$5$saltsaltsaltsalt$H730WRbBitpgoECLyhjRRnXG5wCDkLlcGIyIVSy/ll2", pw},
	{"SHA256-CRYPT", "{SHA256-CRYPT}$5$saltsaltsaltsalt$H730WRbBitpgoECLyhjRRnXG5wCDkLlcGIyIVSy/ll2", pw},
	{"bare sha256-crypt", "$5$saltsaltsaltsalt$H730WRbBitpgoECLyhjRRnXG5wCDkLlcGIyIVSy/ll2", pw},
	{"sha256-crypt rounds", "$5$rounds=1000$saltsaltsaltsalt$ni/aNg.oO2WDJ/2SKKsrvUyHMXIXAcxU.yFnP2DFk/1", pw},
	{"sha512-crypt", "{CRYPT}$6$abcdefgh$lp0NsABvypUd0CNFxmLszTOy.Gz4BAtRIsYXPvBGDqKpybtP6RkMLDU0DD6v3vQQTszXNcpu39ozEsGkGMGfV0", pw},
	{"SHA512-CRYPT", "{SHA512-CRYPT}$6$abcdefgh$lp0NsABvypUd0CNFxmLszTOy.Gz4BAtRIsYXPvBGDqKpybtP6RkMLDU0DD6v3vQQTszXNcpu39ozEsGkGMGfV0", pw},
	{"bare sha512-crypt", "$6$abcdefgh$lp0NsABvypUd0CNFxmLszTOy.Gz4BAtRIsYXPvBGDqKpybtP6RkMLDU0DD6v3vQQTszXNcpu39ozEsGkGMGfV0", pw},
	{"sha512-crypt rounds, short salt", "$6$rounds=10000$saltsalt$28xE5QcLL.cm8FQBaS6St3G06k4dbyd8Nuq/KnfxZMV2nirrTW9nsTY45XyN6nbf2BOlVh4qRb/pJuX9Fsb7G1", pw},
	{"sha512-crypt rounds=1000", "$6$rounds=1000$ab$cKrIRE.i7XymdZRvb4weBnsGiaDe87Cub5R6rNn.mx1x3krwRxztxCqUSx62mJiVpUbxIk9O/KcR7iZbUXzeO1", pw},
	{"sha512-crypt UTF-8 password", "$6$abcdefgh$qlUjQo8xiC5dmwOr49rtm.DQdv9onQYoWr0dgDR2SqMkw1296.hIZnRd/ltg71cpfDQGxCw0Bli1kXypCoIxg0", "pässwörd"},

	// bcrypt (libxcrypt).
	{"bcrypt $2b$", "$2b$05$abcdefghijklmnopqrstuum/eid5KarG7bpTX321NTncVoKNxzTVq", pw},
	{"bcrypt $2y$", "$2y$05$abcdefghijklmnopqrstuum/eid5KarG7bpTX321NTncVoKNxzTVq", pw},
	{"bcrypt $2a$", "$2a$05$abcdefghijklmnopqrstuum/eid5KarG7bpTX321NTncVoKNxzTVq", pw},
	{"BLF-CRYPT", "{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuum/eid5KarG7bpTX321NTncVoKNxzTVq", pw},
	{"blf-crypt lower", "{blf-crypt}$2y$05$abcdefghijklmnopqrstuum/eid5KarG7bpTX321NTncVoKNxzTVq", pw},
	{"CRYPT bcrypt", "{CRYPT}$2b$05$abcdefghijklmnopqrstuum/eid5KarG7bpTX321NTncVoKNxzTVq", pw},
	{"bcrypt UTF-8", "$2b$04$abcdefghijklmnopqrstuuyx2n0Zzopyr9QuYTMCfOJJOj526QVoC", "pässwörd"},
	{"bcrypt 84-byte password", "$2y$04$abcdefghijklmnopqrstuubzadhGtS2zEF.gu0yd0opP6cVzb.e0i", strings.Repeat("x", 72) + "TAIL-IGNORED"},
	{"bcrypt 72-byte password", "$2y$04$abcdefghijklmnopqrstuubzadhGtS2zEF.gu0yd0opP6cVzb.e0i", strings.Repeat("x", 72)},

	// argon2 (libargon2, libsodium), salt "0123456789abcdef" except sodium's.
	{"ARGON2ID libsodium (Dovecot)", "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$ZbMIaHldViOkHEGy2OzK2g$kkjY5IlKQZunm9vvcyZLab12fWEitmdmQ4XrcGHnOJg", pw},
	{"ARGON2ID m=64MiB t=3", "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$MDEyMzQ1Njc4OWFiY2RlZg$BSFcKkiX5krhFjiLeSJlnvfAfBNoxQUUupTrGqv0y4A", pw},
	{"argon2id p=2", "{argon2id}$argon2id$v=19$m=64,t=2,p=2$MDEyMzQ1Njc4OWFiY2RlZg$JdcEz7QQqFf9bzj5rNndxRNkyIgIu9yGQ1ideztYWzw", pw},
	{"bare argon2id p=4", "$argon2id$v=19$m=256,t=1,p=4$MDEyMzQ1Njc4OWFiY2RlZg$b4bVRcOfkzaAYFmmj80J7LwEFy0EukuBoltPYlrLvfU", pw},
	{"ARGON2I", "{ARGON2I}$argon2i$v=19$m=64,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$blbXgAGVLlAjsbJYkMCkxdVVXd4Xp/RAo6WKkK2HrS0", pw},
	{"CRYPT argon2i", "{CRYPT}$argon2i$v=19$m=64,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$blbXgAGVLlAjsbJYkMCkxdVVXd4Xp/RAo6WKkK2HrS0", pw},

	// Traditional DES crypt (perl crypt).
	{"DES password", "{CRYPT}abJnggxhB/yWI", "password"},
	{"DES test", "{crypt}abgOeLfPimXQo", "test"},
	{"DES empty", "{CRYPT}abmF1QH4PEr.E", ""},
	{"DES one char", "{CRYPT}abxxB7HlIeckU", "a"},
	{"DES salt ./", "{CRYPT}./xZjzHv5vzVE", "password"},
	{"DES salt zZ", "{DES-CRYPT}zZDDIZ0NOlPzw", "password"},
	{"DES 8 chars", "{CRYPT}ab1iBa.N.U2C6", "12345678"},
	{"DES only 8 chars count", "{CRYPT}ab1iBa.N.U2C6", "123456789"},
	{"DES 8-bit chars lose the top bit", "{CRYPT}abGXCZdt888ZI", "\xe9t\xe9"},
	{"DES pw", "{CRYPT}abCaRCrCLOEPc", pw},

	// Cleartext.
	{"PLAIN", "{PLAIN}" + pw, pw},
	{"CLEARTEXT", "{CLEARTEXT}" + pw, pw},
	{"plain lower", "{plain}" + pw, pw},
	{"PLAIN empty", "{PLAIN}", ""},
	{"bare cleartext", pw, pw},
	{"bare braces not a scheme", "{my pass}", "{my pass}"},
	{"bare DES-looking is cleartext", "abJnggxhB/yWI", "abJnggxhB/yWI"},
	{"bare dollar not crypt", "$ecret$1", "$ecret$1"},
}

func TestVerifyVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			ok, err := Verify(v.stored, v.plain)
			if err != nil || !ok {
				t.Fatalf("Verify(%q, right password) = %v, %v; want true, nil", v.stored, ok, err)
			}
			for _, wrong := range []string{v.plain + "x", "wrong", "", strings.ToUpper(v.plain)} {
				if wrong == v.plain || strings.HasPrefix(v.name, "DES only 8") ||
					(strings.HasPrefix(v.name, "bcrypt") && len(wrong) > 72) ||
					(strings.HasPrefix(v.name, "DES") && len(v.plain) >= 8) {
					continue
				}
				ok, err := Verify(v.stored, wrong)
				if err != nil || ok {
					t.Errorf("Verify(%q, %q) = %v, %v; want false, nil", v.stored, wrong, ok, err)
				}
			}
		})
	}
}

func TestVerifyErrors(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	c64 := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name, stored string
		want         error
		msg          string // part of the message
	}{
		{"unknown scheme", "{FOO}bar", ErrUnsupported, `{FOO}`},
		{"unknown encoding", "{SSHA.ROT13}abc", ErrUnsupported, "encoding suffix"},
		{"suffix on plain", "{PLAIN.HEX}abc", ErrUnsupported, "cleartext"},
		{"suffix on crypt", "{CRYPT.HEX}abc", ErrUnsupported, "crypt"},
		{"SSHA bad base64", "{SSHA}!!!not base64!!!", ErrMalformed, "bad base64"},
		{"SSHA too short", "{SSHA}" + b64(20), ErrMalformed, "want a 20-byte digest and a salt"},
		{"SSHA truncated", "{SSHA}36T+CZy/LLJL94gOZ6Wxai", ErrMalformed, "{SSHA}"},
		{"SSHA512 truncated", "{SSHA512}oV0h09aiLkq3ruf2ZXDxgCZuFXvjp+AurH1wEkEm0IP1VQW5K2", ErrMalformed, "{SSHA512}"},
		{"SHA wrong size", "{SHA}" + b64(19), ErrMalformed, "digest is 19 bytes, want 20"},
		{"SHA.HEX bad hex", "{SHA.HEX}zzzz", ErrMalformed, "bad hex"},
		{"MD5 empty", "{MD5}", ErrMalformed, "digest is 0 bytes"},
		{"CRYPT empty", "{CRYPT}", ErrMalformed, "empty"},
		{"CRYPT garbage", "{CRYPT}abc", ErrMalformed, "not a known crypt"},
		{"DES bad char", "{CRYPT}ab!nggxhB/yWI", ErrMalformed, "13 characters"},
		{"DES-CRYPT holding md5-crypt", "{DES-CRYPT}$1$saltsalt$Z0Sv5iAteV1M7ZtPV12kW0", ErrMalformed, "not traditional DES"},
		{"md5-crypt truncated", "$1$saltsalt$Z0Sv5iAteV1M7Zt", ErrMalformed, "hash part"},
		{"md5-crypt no salt", "$1$Z0Sv5iAteV1M7ZtPV12kW0", ErrMalformed, "missing salt"},
		{"sha512-crypt truncated", "{CRYPT}$6$abcdefgh$lp0NsABvypUd0CNFx", ErrMalformed, "86 characters"},
		{"sha512-crypt bad rounds", "$6$rounds=x$salt$" + c64(86), ErrMalformed, "rounds"},
		{"sha512-crypt costly", "$6$rounds=999999999$salt$" + c64(86), ErrUnsupported, "above limit"},
		{"sha512-crypt $ in salt", "$6$rounds=5000$a$b$" + c64(86), ErrMalformed, "salt"},
		{"BLF-CRYPT holding md5-crypt", "{BLF-CRYPT}$1$saltsalt$Z0Sv5iAteV1M7ZtPV12kW0", ErrMalformed, "not bcrypt"},
		{"bcrypt truncated", "{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuum/eid5K", ErrMalformed, "bcrypt"},
		{"bcrypt trailing garbage", "$2y$05$abcdefghijklmnopqrstuum/eid5KarG7bpTX321NTncVoKNxzTVqXX", ErrMalformed, "bcrypt"},
		{"bcrypt bad cost", "$2y$9x$" + c64(53), ErrMalformed, "cost"},
		{"bcrypt cost 32", "$2y$32$" + c64(53), ErrMalformed, "cost"},
		{"bcrypt costly", "$2y$20$" + c64(53), ErrUnsupported, "above limit"},
		{"bcrypt $2x$", "$2x$05$" + c64(53), ErrUnsupported, "2x"},
		{"yescrypt", "{CRYPT}$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7", ErrUnsupported, "yescrypt"},
		{"bare yescrypt", "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7", ErrUnsupported, "yescrypt"},
		{"BSDi DES", "{CRYPT}_J9..CCCCXBrJUJV154M", ErrUnsupported, "BSDi"},
		{"argon2 missing p", "{ARGON2ID}$argon2id$v=19$m=64,t=2$MDEyMzQ1Njc4OWFiY2RlZg$JdcEz7QQqFf9bzj5rNndxRNkyIgIu9yGQ1ideztYWzw", ErrMalformed, "required"},
		{"argon2 v=16", "{ARGON2ID}$argon2id$v=16$m=64,t=2,p=2$MDEyMzQ1Njc4OWFiY2RlZg$JdcEz7QQqFf9bzj5rNndxRNkyIgIu9yGQ1ideztYWzw", ErrMalformed, "v=19"},
		{"argon2 no version", "$argon2id$m=64,t=2,p=2$MDEyMzQ1Njc4OWFiY2RlZg$JdcEz7QQqFf9bzj5rNndxRNkyIgIu9yGQ1ideztYWzw", ErrMalformed, "argon2id"},
		{"argon2 t=0", "$argon2id$v=19$m=64,t=0,p=2$MDEyMzQ1Njc4OWFiY2RlZg$JdcEz7QQqFf9bzj5rNndxRNkyIgIu9yGQ1ideztYWzw", ErrMalformed, "at least 1"},
		{"argon2 m<8p", "$argon2id$v=19$m=8,t=1,p=2$MDEyMzQ1Njc4OWFiY2RlZg$JdcEz7QQqFf9bzj5rNndxRNkyIgIu9yGQ1ideztYWzw", ErrMalformed, "8*p"},
		{"argon2 bad salt", "$argon2id$v=19$m=64,t=2,p=2$!!$JdcEz7QQqFf9bzj5rNndxRNkyIgIu9yGQ1ideztYWzw", ErrMalformed, "salt"},
		{"argon2 truncated", "$argon2id$v=19$m=64,t=2,p=2$MDEyMzQ1Njc4OWFiY2RlZg$", ErrMalformed, "hash"},
		{"argon2 costly", "$argon2id$v=19$m=4194304,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$JdcEz7QQqFf9bzj5rNndxRNkyIgIu9yGQ1ideztYWzw", ErrUnsupported, "above limit"},
		{"ARGON2ID holding argon2i", "{ARGON2ID}$argon2i$v=19$m=64,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$blbXgAGVLlAjsbJYkMCkxdVVXd4Xp/RAo6WKkK2HrS0", ErrMalformed, "not argon2id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := Verify(tt.stored, pw)
			if ok || !errors.Is(err, tt.want) {
				t.Fatalf("Verify(%q) = %v, %v; want false, %v", tt.stored, ok, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
			// The message names the scheme, never the secret parts.
			_, value, _ := splitPrefix(tt.stored)
			if len(value) > 8 && strings.Contains(err.Error(), value) {
				t.Errorf("error %q quotes the stored value", err)
			}
		})
	}
}

func TestVerifyLongPassword(t *testing.T) {
	long := strings.Repeat("x", MaxPasswordLen+1)
	for _, stored := range []string{long, "{PLAIN}" + long, "$6$abcdefgh$lp0NsABvypUd0CNFxmLszTOy.Gz4BAtRIsYXPvBGDqKpybtP6RkMLDU0DD6v3vQQTszXNcpu39ozEsGkGMGfV0"} {
		if ok, err := Verify(stored, long); ok || err != nil {
			t.Errorf("Verify(%.10q..., %d bytes) = %v, %v; want false, nil", stored, len(long), ok, err)
		}
	}
	ok, err := Verify("{PLAIN}"+long[1:], long[1:])
	if !ok || err != nil {
		t.Errorf("Verify of a MaxPasswordLen password = %v, %v", ok, err)
	}
}

func TestParseScheme(t *testing.T) {
	for _, s := range Schemes() {
		for _, name := range []string{string(s), strings.ToLower(string(s)), " " + string(s) + " "} {
			got, err := ParseScheme(name)
			if err != nil || got != s {
				t.Errorf("ParseScheme(%q) = %q, %v; want %q", name, got, err, s)
			}
		}
	}
	for name, want := range map[string]Scheme{"cleartext": SchemePlain, "sha1": SchemeSHA, "bcrypt": SchemeBlfCrypt, "SHA512-crypt": SchemeCrypt} {
		if got, err := ParseScheme(name); err != nil || got != want {
			t.Errorf("ParseScheme(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	_, err := ParseScheme("rot13")
	if err == nil || !strings.Contains(err.Error(), `"rot13"`) || !strings.Contains(err.Error(), "SSHA, SHA,") ||
		!strings.Contains(err.Error(), "ARGON2ID") {
		t.Errorf("ParseScheme(rot13) error = %v; want it to name rot13 and list the valid schemes", err)
	}
}

func TestHasScheme(t *testing.T) {
	for s, want := range map[string]bool{
		"{SSHA}abc":         true,
		"{ssha}abc":         true,
		"{Blf-Crypt}$2y$":   true,
		"{SHA512-CRYPT}x":   true,
		"{PLAIN}":           true,
		"{CLEARTEXT}x":      true,
		"{ARGON2ID}$argon":  true,
		"{MD5.HEX}00":       true,
		"{SSHA.b64}00":      true,
		"{FOO}abc":          false,
		"{SSHA.ROT13}abc":   false,
		"{my pass}":         false,
		"{}":                false,
		"{SSHA":             false,
		"SSHA}abc":          false,
		"secret":            false,
		"":                  false,
		"$6$salt$hash":      false, // a crypt string, but no {NAME} prefix
		" {SSHA}abc":        false,
		"{SSHA}":            true,
		"{CRYPT}abJnggxhB/": true,
	} {
		if got := HasScheme(s); got != want {
			t.Errorf("HasScheme(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestHashRoundTrip(t *testing.T) {
	prefixes := map[Scheme]string{
		SchemeCrypt:    "{CRYPT}$6$",
		SchemeBlfCrypt: "{BLF-CRYPT}$2a$10$",
		SchemeArgon2ID: "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$",
	}
	for _, s := range Schemes() {
		t.Run(string(s), func(t *testing.T) {
			for _, plain := range []string{pw, "", "pässwörd with spaces"} {
				h, err := Hash(s, plain)
				if err != nil {
					t.Fatalf("Hash(%s) error: %v", s, err)
				}
				want := prefixes[s]
				if want == "" {
					want = "{" + string(s) + "}"
				}
				if !strings.HasPrefix(h, want) {
					t.Errorf("Hash(%s) = %q, want prefix %q", s, h, want)
				}
				if !HasScheme(h) {
					t.Errorf("HasScheme(Hash(%s)) = false", s)
				}
				if ok, err := Verify(h, plain); !ok || err != nil {
					t.Errorf("Verify(Hash(%s, %q)) = %v, %v", s, plain, ok, err)
				}
				if ok, err := Verify(h, plain+"x"); ok || err != nil {
					t.Errorf("Verify(Hash(%s), wrong) = %v, %v", s, ok, err)
				}
				if s == SchemeArgon2ID || s == SchemeBlfCrypt {
					break // slow: one password is enough
				}
			}
		})
	}
}

func TestHashDetails(t *testing.T) {
	// Salted digests get a fresh 8-byte salt each time.
	a, _ := Hash(SchemeSSHA, pw)
	b, _ := Hash(SchemeSSHA, pw)
	if a == b {
		t.Error("two SSHA hashes of the same password are equal: salt not random")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, "{SSHA}"))
	if err != nil || len(raw) != 20+8 {
		t.Errorf("SSHA value decodes to %d bytes (%v), want 28", len(raw), err)
	}
	// Scheme names are case-insensitive here too.
	if h, err := Hash("ssha512", pw); err != nil || !strings.HasPrefix(h, "{SSHA512}") {
		t.Errorf("Hash(ssha512) = %q, %v", h, err)
	}
	if _, err := Hash("rot13", pw); err == nil {
		t.Error("Hash(rot13) succeeded")
	}
	// bcrypt would silently ignore bytes past 72: refuse instead.
	if _, err := Hash(SchemeBlfCrypt, strings.Repeat("x", 73)); err == nil {
		t.Error("Hash(BLF-CRYPT, 73 bytes) succeeded")
	}
	if _, err := Hash(SchemeSSHA, strings.Repeat("x", MaxPasswordLen+1)); err == nil {
		t.Error("Hash accepted a password over MaxPasswordLen")
	}
	// sha512-crypt: 16-character salt, default rounds (no rounds= field).
	h, _ := Hash(SchemeCrypt, pw)
	f := strings.Split(strings.TrimPrefix(h, "{CRYPT}"), "$")
	if len(f) != 4 || len(f[2]) != 16 || len(f[3]) != 86 {
		t.Errorf("Hash(CRYPT) = %q, want $6$<16 chars>$<86 chars>", h)
	}
}

func TestSchemesIsACopy(t *testing.T) {
	s := Schemes()
	s[0] = "X"
	if Schemes()[0] != SchemeSSHA {
		t.Error("Schemes returns the package's own slice")
	}
}

func BenchmarkVerifySSHA(b *testing.B) {
	stored := "{SSHA}36T+CZy/LLJL94gOZ6WxairV8moBAgMEBQYHCA=="
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := Verify(stored, pw); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkVerifyDES(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := Verify("{CRYPT}abJnggxhB/yWI", "password"); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkVerifySHA512Crypt(b *testing.B) {
	stored := "$6$abcdefgh$lp0NsABvypUd0CNFxmLszTOy.Gz4BAtRIsYXPvBGDqKpybtP6RkMLDU0DD6v3vQQTszXNcpu39ozEsGkGMGfV0"
	for b.Loop() {
		if ok, _ := Verify(stored, pw); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkVerifyBcrypt10(b *testing.B) {
	stored, _ := Hash(SchemeBlfCrypt, pw)
	for b.Loop() {
		if ok, _ := Verify(stored, pw); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkVerifyArgon2ID(b *testing.B) {
	stored, _ := Hash(SchemeArgon2ID, pw)
	for b.Loop() {
		if ok, _ := Verify(stored, pw); !ok {
			b.Fatal("no match")
		}
	}
}

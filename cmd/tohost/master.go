package main

import (
	"errors"

	"github.com/spf13/pflag"
)

// masterFlags are the master login of the backends' IMAP servers: what
// `backend` accepts and what `user move` logs in with.
type masterFlags struct {
	user, passwordFile string
}

func (f *masterFlags) register(fs *pflag.FlagSet, userUsage, fileUsage string) {
	fs.StringVar(&f.user, "master-user", "", userUsage)
	fs.StringVar(&f.passwordFile, "master-password-file", "", fileUsage)
}

// credentials reads the master password; both results are empty when
// neither flag is given. One without the other is an error: a half
// configured master login must not pass for a disabled one.
func (f *masterFlags) credentials() (user, password string, err error) {
	switch {
	case f.user == "" && f.passwordFile == "":
		return "", "", nil
	case f.user == "" || f.passwordFile == "":
		return "", "", errors.New("--master-user and --master-password-file go together")
	}
	if err := readSecretFile("--master-password-file", f.passwordFile, &password); err != nil {
		return "", "", err
	}
	if password == "" {
		return "", "", errors.New("--master-password-file: the file is empty")
	}
	return f.user, password, nil
}

# make test  — the whole suite (vet, race detector, fuzz seed corpora replayed);
#              scripts/test-services.sh first makes sure PostgreSQL and Redis run
# make bench — Go benchmarks
# make fuzz  — run each fuzz target for FUZZTIME (default 30s)
GO       ?= go
FUZZTIME ?= 30s

.PHONY: test bench fuzz build

build:
	$(GO) build ./...

test:
	bash scripts/test-services.sh
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 8m ./...
	cd third_party/gldap && $(GO) vet ./... && $(GO) test -race -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseRequest -fuzztime $(FUZZTIME) ./protocol/authent/
	$(GO) test -run '^$$' -fuzz FuzzParseFields -fuzztime $(FUZZTIME) ./protocol/authent/
	$(GO) test -run '^$$' -fuzz FuzzVerify -fuzztime $(FUZZTIME) ./directory/password/
	$(GO) test -run '^$$' -fuzz FuzzParseUserLine -fuzztime $(FUZZTIME) ./protocol/authent/
	$(GO) test -run '^$$' -fuzz FuzzUnmarshal -fuzztime $(FUZZTIME) ./directory/
	$(GO) test -run '^$$' -fuzz FuzzFilter -fuzztime $(FUZZTIME) ./directory/ldap/
	$(GO) test -run '^$$' -fuzz FuzzServer -fuzztime $(FUZZTIME) ./directory/ldap/
	$(GO) test -run '^$$' -fuzz FuzzImport -fuzztime $(FUZZTIME) ./directory/importer/
	$(GO) test -run '^$$' -fuzz FuzzIMAPCommand -fuzztime $(FUZZTIME) ./proxy/
	$(GO) test -run '^$$' -fuzz FuzzPOP3Decode -fuzztime $(FUZZTIME) ./proxy/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./protocol/saslserver/
	$(GO) test -run '^$$' -fuzz FuzzPOP3Session -fuzztime $(FUZZTIME) ./proxy/
	$(GO) test -run '^$$' -fuzz FuzzFolderName -fuzztime $(FUZZTIME) ./backend/maildir/
	$(GO) test -run '^$$' -fuzz FuzzUserName -fuzztime $(FUZZTIME) ./backend/maildir/
	$(GO) test -run '^$$' -fuzz FuzzCommand -fuzztime $(FUZZTIME) ./backend/pop3/
	$(GO) test -run '^$$' -fuzz FuzzWire -fuzztime $(FUZZTIME) ./backend/pop3/
	cd third_party/gldap && $(GO) test -run '^$$' -fuzz FuzzDecodeMessage -fuzztime $(FUZZTIME) .
	cd third_party/gldap && $(GO) test -run '^$$' -fuzz FuzzParseSearch -fuzztime $(FUZZTIME) .

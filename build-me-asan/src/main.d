build-me-asan/src/main.o: src/main.c src/core/banned.h src/cli/cli.h \
 src/daemon.h src/core/version.h
src/core/banned.h:
src/cli/cli.h:
src/daemon.h:
src/core/version.h:

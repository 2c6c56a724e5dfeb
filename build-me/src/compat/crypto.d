build-me/src/compat/crypto.o: src/compat/crypto.c src/core/banned.h \
 src/compat/crypto.h src/core/util.h
src/core/banned.h:
src/compat/crypto.h:
src/core/util.h:

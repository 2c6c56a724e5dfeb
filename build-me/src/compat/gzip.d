build-me/src/compat/gzip.o: src/compat/gzip.c src/core/banned.h \
 src/compat/gzip.h src/core/strbuf.h
src/core/banned.h:
src/compat/gzip.h:
src/core/strbuf.h:

build-me/src/compat/archive.o: src/compat/archive.c src/core/banned.h \
 src/compat/archive.h src/core/strbuf.h src/core/util.h
src/core/banned.h:
src/compat/archive.h:
src/core/strbuf.h:
src/core/util.h:

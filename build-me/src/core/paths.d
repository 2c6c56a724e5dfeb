build-me/src/core/paths.o: src/core/paths.c src/core/banned.h \
 src/core/paths.h src/core/util.h
src/core/banned.h:
src/core/paths.h:
src/core/util.h:

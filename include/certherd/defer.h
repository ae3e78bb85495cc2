/* SPDX-License-Identifier: MIT */
/*
 * Run a function on the next turn of the event loop: how backends keep
 * the "callbacks never fire inside the call that started the work" rule.
 */
#pragma once

struct event_base;

int ch_defer(struct event_base *base, void (*fn)(void *arg), void *arg);

// SPDX-License-Identifier: GPL-2.0
/*
 * kecho: counters, one decimal number per file under
 * /sys/module/kecho/stats/, monotonic since load. What each one counts is
 * described at the top of echo.c.
 */
#include "kecho.h"

#include <linux/atomic.h>
#include <linux/kobject.h>
#include <linux/module.h>
#include <linux/sysfs.h>

static atomic64_t kecho_counters[KECHO_NR_COUNTERS];
static struct kobject *kecho_stats_kobj;

struct kecho_stat_attribute {
	struct kobj_attribute kattr;
	enum kecho_counter counter;
};

void kecho_stat_add(enum kecho_counter c, u64 n)
{
	atomic64_add(n, &kecho_counters[c]);
}

static ssize_t kecho_stat_show(struct kobject *kobj,
			       struct kobj_attribute *attr, char *buf)
{
	struct kecho_stat_attribute *sa =
		container_of(attr, struct kecho_stat_attribute, kattr);

	return sysfs_emit(buf, "%llu\n",
			  (u64)atomic64_read(&kecho_counters[sa->counter]));
}

#define KECHO_STAT(_name, _counter) {					\
	.kattr = __ATTR(_name, 0444, kecho_stat_show, NULL),		\
	.counter = _counter,						\
}

static struct kecho_stat_attribute kecho_stat_attrs[] = {
	KECHO_STAT(rx_packets, KECHO_RX_PACKETS),
	KECHO_STAT(rx_bytes, KECHO_RX_BYTES),
	KECHO_STAT(tx_packets, KECHO_TX_PACKETS),
	KECHO_STAT(tx_bytes, KECHO_TX_BYTES),
	KECHO_STAT(drop_loop, KECHO_DROP_LOOP_CNT),
	KECHO_STAT(drop_bcast, KECHO_DROP_BCAST_CNT),
	KECHO_STAT(drop_ratelimit, KECHO_DROP_RATELIMIT_CNT),
	KECHO_STAT(drop_csum, KECHO_DROP_CSUM_CNT),
	KECHO_STAT(tx_errors, KECHO_TX_ERRORS),
	KECHO_STAT(rx_errors, KECHO_RX_ERRORS),
};

static struct attribute *kecho_stats_attrs[ARRAY_SIZE(kecho_stat_attrs) + 1];

static const struct attribute_group kecho_stats_group = {
	.attrs = kecho_stats_attrs,
};

int kecho_stats_init(void)
{
	unsigned int i;
	int err;

	BUILD_BUG_ON(ARRAY_SIZE(kecho_stat_attrs) != KECHO_NR_COUNTERS);
	for (i = 0; i < ARRAY_SIZE(kecho_stat_attrs); i++)
		kecho_stats_attrs[i] = &kecho_stat_attrs[i].kattr.attr;

	kecho_stats_kobj = kobject_create_and_add("stats",
						  &THIS_MODULE->mkobj.kobj);
	if (!kecho_stats_kobj)
		return -ENOMEM;

	err = sysfs_create_group(kecho_stats_kobj, &kecho_stats_group);
	if (err) {
		kobject_put(kecho_stats_kobj);
		return err;
	}
	return 0;
}

void kecho_stats_exit(void)
{
	sysfs_remove_group(kecho_stats_kobj, &kecho_stats_group);
	kobject_put(kecho_stats_kobj);
}

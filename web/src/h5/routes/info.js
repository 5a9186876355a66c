// Hospital information (PUB-1..6) and announcements: readable without signing in, so a shared
// link or a first visit opens them directly. The introduction itself (/hospital) is in home.js.
const page = (name) => () => import(`../pages/info/${name}.vue`)

export default [
  { path: '/floors', name: 'floors', component: page('FloorsPage'), meta: { title: '楼层导航', public: true } },
  { path: '/news', name: 'news', component: page('NewsPage'), meta: { title: '医院新闻', public: true } },
  { path: '/news/:id', name: 'news-item', component: page('NewsItemPage'), meta: { title: '新闻详情', public: true }, props: true },
  { path: '/experts', name: 'experts', component: page('ExpertsPage'), meta: { title: '专家介绍', public: true } },
  { path: '/experts/:id', name: 'expert', component: page('ExpertPage'), meta: { title: '专家详情', public: true }, props: true },
  { path: '/guide', name: 'guide', component: page('GuidePage'), meta: { title: '就医指南', public: true } },
  { path: '/guide/:slug', name: 'guide-page', component: page('GuideArticlePage'), meta: { title: '就医指南', public: true }, props: true },
  { path: '/announcements', name: 'announcements', component: page('AnnouncementsPage'), meta: { title: '医院公告', public: true } },
]
